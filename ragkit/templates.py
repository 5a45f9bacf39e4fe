"""Find, before a pipeline runs, template reads that Haystack's template sandbox refuses.

Haystack renders prompt templates in a Jinja sandbox that refuses attributes whose names start
with an underscore (``{{ question.__class__ }}``), but only while rendering: the pipeline loads,
then fails on the first question. ``ragkit pipelines validate`` and pipeline loading call
:func:`template_problems` so the file is reported with the YAML path instead. A name with two
leading underscores is never a field a template needs; single-underscore names are left alone,
since the sandbox reads them as dict keys when the object is a mapping.
"""

from __future__ import annotations

from typing import Any

__all__ = ["template_problems"]


def _strings(value: Any) -> list[str]:
    """Every string inside a parameter value (a template, or chat messages holding templates)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def template_problems(component: Any, init_parameters: dict[str, Any]) -> list[str]:
    """One line per template attribute read the component's Jinja sandbox would refuse.

    Args:
        component: The built component; its Jinja environment (``_env``, as Haystack's prompt
            builders keep it) parses the templates, so custom tags such as ``{% message %}``
            are understood. Components without one have nothing to check.
        init_parameters: The component's init parameters from the pipeline file; those whose
            name ends in ``template`` are checked.

    Returns:
        ``"PARAMETER: line N reads ..."`` lines; empty when nothing is refused.
    """
    env = getattr(component, "_env", None)
    try:
        from jinja2 import Environment, nodes
        from jinja2.exceptions import TemplateError
    except ImportError:  # pragma: no cover - Haystack depends on Jinja
        return []
    if not isinstance(env, Environment):
        return []
    problems: list[str] = []
    for name, value in init_parameters.items():
        if not str(name).endswith("template"):
            continue
        for text in _strings(value):
            if "{" not in text:
                continue
            try:
                tree = env.parse(text)
            except TemplateError:
                continue  # a syntax error: the component's own init reports it
            refused: dict[int, list[str]] = {}
            # outermost read first (``a.__class__.__mro__``: __mro__, __class__): reversed
            for node in reversed(list(tree.find_all(nodes.Getattr))):
                if node.attr.startswith("__"):
                    names = refused.setdefault(node.lineno, [])
                    if repr(node.attr) not in names:
                        names.append(repr(node.attr))
            for lineno, names in sorted(refused.items()):
                problems.append(
                    f"{name}: line {lineno} reads {', '.join(names)}, which Haystack's template "
                    "sandbox refuses when the template is rendered; a template may read only "
                    "its variables and their plain fields"
                )
    return problems
