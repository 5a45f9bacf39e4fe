"""Load, validate and run Haystack-native YAML pipelines with precise, one-line errors.

The YAML is plain Haystack (``components`` with ``type`` + ``init_parameters``, ``connections``).
ragkit checks it before building anything: a module outside the allowlist is never imported,
and each problem is reported as ``FILE: yaml.path: what is wrong``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ragkit.config import read_yaml
from ragkit.errors import ConfigError, InvalidInputError, clip

if TYPE_CHECKING:
    from haystack import Pipeline

    from ragkit.stores.store import RagkitStore

logger = logging.getLogger(__name__)

ALLOWED_MODULES = ("ragkit", "haystack", "haystack_integrations")
TOP_LEVEL_KEYS = {
    "components",
    "connections",
    "metadata",
    "max_runs_per_component",
    "connection_type_validation",
}
# pipeline inputs that ragkit fills at run time (the question, the files to index, ...)
QUERY_INPUTS = frozenset({"query", "text", "question"})
DOCUMENT_INPUT = "document"
"""Open input taking ``ragkit query --document FILE``'s text (long-document pipelines: rapid)."""
RUNTIME_INPUTS = QUERY_INPUTS | {"sources", "top_k", "filters", "streaming_callback"}
RUNTIME_INPUTS |= {DOCUMENT_INPUT}


class PipelineError(InvalidInputError, ValueError):
    """A pipeline file is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if len(problems) == 1 else "\n".join(problems))
        self.problems = problems


@dataclass
class _Spec:
    name: str
    cls: type
    data: dict[str, Any]


def _module_allowed(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


def _resolve_type(type_name: str, where: str, problems: list[str]) -> type | None:
    module_name, _, cls_name = type_name.rpartition(".")
    if not module_name:
        problems.append(
            f"{where}: {clip(type_name)} is not a dotted class path (e.g. ragkit.BM25Retriever)"
        )
        return None
    if not _module_allowed(module_name):
        problems.append(
            f"{where}: module {clip(module_name)} is not allowed; pipelines may use only "
            f"{', '.join(ALLOWED_MODULES)} components"
        )
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        problems.append(
            f"{where}: unknown component type {clip(type_name)} (module {clip(module_name)} not found)"
        )
        return None
    from haystack.core.component import Component

    def is_component(obj: object) -> bool:
        return isinstance(obj, type) and issubclass(obj, Component)

    cls = getattr(module, cls_name, None)
    if not is_component(cls):
        known = [n for n, v in vars(module).items() if is_component(v)]
        hint = difflib.get_close_matches(cls_name, known, n=1)
        extra = f"; did you mean {module_name}.{hint[0]}?" if hint else ""
        problems.append(f"{where}: unknown component type {clip(type_name)}{extra}")
        return None
    return cls


_BASIC = (str, int, float, bool, type(None), list, dict, tuple)


def _is_basic(tp: Any) -> bool:
    """Whether an annotation uses only JSON-like types, so a YAML value can be checked against it."""
    if tp is Any:
        return False
    origin = typing.get_origin(tp)
    if origin is None:
        return tp in _BASIC
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_is_basic(a) for a in typing.get_args(tp))
    if origin in (list, dict, tuple):
        return all(_is_basic(a) for a in typing.get_args(tp) if a is not Ellipsis)
    return False


def _type_label(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_init(spec: _Spec, where: str, problems: list[str]) -> None:
    from pydantic import TypeAdapter, ValidationError

    params = spec.data.get("init_parameters") or {}
    if not isinstance(params, dict):
        problems.append(f"{where}.init_parameters: expected a mapping, got {type(params).__name__}")
        return
    upgrade = getattr(spec.cls, "upgrade_init_parameters", None)
    if callable(upgrade):  # flat parameters of the release before: checked in their new place
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # _build warns, with the path
            params = upgrade(params)
    sig = inspect.signature(spec.cls.__init__)
    try:
        hints = typing.get_type_hints(spec.cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable forward refs: skip type checks, keep name checks
        hints = {}
    accepted = {
        n: p
        for n, p in sig.parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    for key, value in params.items():
        path = f"{where}.init_parameters.{key}"
        if key not in accepted:
            if not takes_kwargs:
                close = difflib.get_close_matches(key, list(accepted), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?"
                    if close
                    else f"; accepted: {', '.join(accepted)}"
                )
                problems.append(f"{path}: unknown parameter{hint}")
            continue
        tp = hints.get(key)
        if tp is None or not _is_basic(tp):
            continue
        try:
            TypeAdapter(tp).validate_python(value, strict=True)
        except ValidationError:
            problems.append(f"{path}: expected {_type_label(tp)}, got {clip(value)}")
    for name, p in accepted.items():
        if p.default is inspect.Parameter.empty and name not in params:
            problems.append(f"{where}.init_parameters: missing required parameter {name!r}")


def is_component_spec(value: Any) -> bool:
    """Whether ``value`` is a ``{type, init_parameters}`` component nested in an init parameter."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("type"), str)
        and set(value) <= {"type", "init_parameters"}
    )


def _check_nested(body: dict[str, Any], where: str, problems: list[str]) -> None:
    """Check components nested in init parameters (e.g. a loop's generator) like top-level ones."""
    params = body.get("init_parameters")
    if not isinstance(params, dict):
        return
    for key, value in params.items():
        if is_component_spec(value):
            path = f"{where}.init_parameters.{key}"
            cls = _resolve_type(value["type"], f"{path}.type", problems)
            if cls is not None:
                _check_init(_Spec(name=key, cls=cls, data=value), path, problems)


def build_component_spec(spec: Any, where: str) -> Any:
    """Validate and instantiate a component given as ``{type, init_parameters}``.

    For components that own sub-components configured in YAML (e.g. the Adaptive-Note loop's
    generator): the same allowlist and parameter checks as top-level components apply.

    Args:
        spec: the nested mapping.
        where: its YAML path, for error messages.

    Returns:
        The component instance (not warmed up).

    Raises:
        PipelineError: the spec is invalid; one line per problem.
    """
    from haystack.core.serialization import component_from_dict

    if not is_component_spec(spec):
        raise PipelineError([f"{where}: expected a mapping with 'type' and 'init_parameters'"])
    problems: list[str] = []
    cls = _resolve_type(spec["type"], f"{where}.type", problems)
    if cls is not None:
        _check_init(_Spec(name=where, cls=cls, data=spec), where, problems)
    if problems or cls is None:
        raise PipelineError(problems)
    payload = {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "init_parameters": dict(spec.get("init_parameters") or {}),
    }
    return component_from_dict(cls, payload, where.rpartition(".")[2] or where)


def _split_socket(ref: Any) -> tuple[str, str | None] | None:
    if not isinstance(ref, str) or not ref:
        return None
    comp, _, socket = ref.partition(".")
    return comp, socket or None


def validate_data(data: Any, source: str) -> tuple[list[_Spec], list[dict[str, Any]], list[str]]:
    """Structural and type checks on parsed YAML; returns specs, connections and problems."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return [], [], [f"{source}: expected a mapping with 'components' and 'connections'"]
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(
                f"{source}: {key}: unknown top-level key; expected {', '.join(sorted(TOP_LEVEL_KEYS))}"
            )
    comps = data.get("components")
    if not isinstance(comps, dict) or not comps:
        return (
            [],
            [],
            [*problems, f"{source}: components: expected a non-empty mapping of name -> component"],
        )
    specs: list[_Spec] = []
    for name, body in comps.items():
        where = f"components.{name}"
        if not isinstance(body, dict):
            problems.append(
                f"{source}: {where}: expected a mapping with 'type' and 'init_parameters'"
            )
            continue
        unknown = set(body) - {"type", "init_parameters"}
        if unknown:
            problems.append(
                f"{source}: {where}.{sorted(unknown)[0]}: unknown key; expected type, init_parameters"
            )
        if not isinstance(body.get("type"), str):
            problems.append(f"{source}: {where}.type: missing component type")
            continue
        sub: list[str] = []
        cls = _resolve_type(body["type"], f"{where}.type", sub)
        if cls is not None:
            spec = _Spec(name=str(name), cls=cls, data=body)
            _check_init(spec, where, sub)
            _check_nested(body, where, sub)
            specs.append(spec)
        problems.extend(f"{source}: {p}" for p in sub)
    conns = data.get("connections") or []
    if not isinstance(conns, list):
        problems.append(f"{source}: connections: expected a list of {{sender, receiver}}")
        conns = []
    for i, conn in enumerate(conns):
        where = f"connections[{i}]"
        if not isinstance(conn, dict) or set(conn) != {"sender", "receiver"}:
            problems.append(f"{source}: {where}: expected exactly 'sender' and 'receiver'")
            continue
        for end in ("sender", "receiver"):
            ref = _split_socket(conn[end])
            if ref is None:
                problems.append(
                    f"{source}: {where}.{end}: expected 'component.socket', got {clip(conn[end])}"
                )
            elif ref[0] not in comps:
                problems.append(f"{source}: {where}.{end}: no component named {clip(ref[0])}")
    return specs, [c for c in conns if isinstance(c, dict)], problems


def _report_deprecations(caught: list[warnings.WarningMessage], where: str) -> None:
    """Log each deprecation a component raised while loading, naming the file and component.

    A ``DeprecationWarning`` is hidden by default outside ``__main__``; a user whose YAML uses
    a deprecated key should hear about it, so it is also logged (the CLI prints log warnings as
    ``warning:`` lines). Other warnings go on unchanged.
    """
    for item in caught:
        if issubclass(item.category, DeprecationWarning):
            logger.warning("%s: %s", where, item.message)
        warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _build(
    specs: list[_Spec], conns: list[dict[str, Any]], data: dict[str, Any], source: str
) -> tuple[Pipeline, list[str]]:
    from haystack import Pipeline
    from haystack.core.serialization import component_from_dict

    from ragkit.templates import template_problems

    problems: list[str] = []
    pipe = Pipeline(
        metadata=data.get("metadata") or {},
        max_runs_per_component=data.get("max_runs_per_component", 100),
    )
    for spec in specs:
        # the class's own path, so re-exported names (e.g. ragkit.BM25Retriever) load too
        payload = {
            "type": f"{spec.cls.__module__}.{spec.cls.__qualname__}",
            "init_parameters": dict(spec.data.get("init_parameters") or {}),
        }
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DeprecationWarning)
                instance = component_from_dict(spec.cls, payload, spec.name)
        except Exception as exc:  # noqa: BLE001 - a component's own validation error, reported per node
            parameter = getattr(exc, "parameter", None)  # ragkit.errors.InvalidParameter
            if isinstance(parameter, str):
                message = getattr(exc, "message", str(exc))
                problems.append(
                    f"{source}: components.{spec.name}.init_parameters.{parameter}: {message}"
                )
                continue
            problems.append(
                f"{source}: components.{spec.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            continue
        finally:  # deprecated keys are reported even when another key is wrong
            _report_deprecations(caught, f"{source}: components.{spec.name}")
        pipe.add_component(spec.name, instance)
        # a template read the sandbox refuses would only fail on the first question
        problems += [
            f"{source}: components.{spec.name}.init_parameters.{line}"
            for line in template_problems(instance, payload["init_parameters"])
        ]
    built = set(pipe.graph.nodes)
    for i, conn in enumerate(conns):
        s, r = _split_socket(conn.get("sender")), _split_socket(conn.get("receiver"))
        if s is None or r is None or s[0] not in built or r[0] not in built:
            continue
        try:
            pipe.connect(conn["sender"], conn["receiver"])
        except Exception as exc:  # noqa: BLE001 - haystack raises PipelineConnectError and others
            msg = " ".join(str(exc).split())
            problems.append(f"{source}: connections[{i}]: {msg[:300]}")
    if problems:
        return pipe, problems  # missing inputs would only echo the failures above
    for comp, sockets in pipe.inputs().items():
        for socket, info in sockets.items():
            if info.get("is_mandatory") and socket not in RUNTIME_INPUTS:
                problems.append(
                    f"{source}: components.{comp}: input {socket!r} is required but nothing is "
                    "connected to it; add a connection or remove the component"
                )
    return pipe, problems


PIPELINE_BASE = "same_as"


def _locate_base(pointer: Path, name: str) -> Path:
    """The pipeline a ``same_as: NAME`` names: beside the pointer first, then by name."""
    from ragkit.resources import ResourceNotFoundError, resolve_yaml

    for cand in (pointer.parent / name, pointer.parent / f"{name}.yaml"):
        if cand.is_file():
            return cand
    try:
        return resolve_yaml(name, "pipelines", "pipeline")
    except ResourceNotFoundError as exc:
        raise PipelineError([f"{pointer}: {PIPELINE_BASE}: {exc}"]) from None


def pipeline_chain(path: str | Path) -> list[Path]:
    """The files a pipeline is made of: ``path``, then each ``same_as`` base it points at.

    A variant such as ``memorag_lite.yaml`` is ``same_as: memorag`` plus the settings it
    changes, so the two cannot drift apart. Loops and missing bases are one-line errors.
    """
    chain = [Path(path)]
    while True:
        try:
            data = read_yaml(chain[-1])
        except ConfigError as exc:
            raise PipelineError([str(exc)]) from None
        if not isinstance(data, dict) or PIPELINE_BASE not in data:
            return chain
        target = data[PIPELINE_BASE]
        if not isinstance(target, str) or not target.strip():
            raise PipelineError(
                [f"{chain[-1]}: {PIPELINE_BASE}: must name a pipeline, got {clip(target)}"]
            )
        extra = sorted(set(data) - {PIPELINE_BASE, "components"})
        if extra:
            raise PipelineError(
                [
                    f"{chain[-1]}: {extra[0]}: a same_as pipeline holds only {PIPELINE_BASE} "
                    "and components (the settings it changes)"
                ]
            )
        base = _locate_base(chain[-1], target.strip())
        if base.resolve() in {p.resolve() for p in chain}:
            raise PipelineError(
                [f"{chain[-1]}: {PIPELINE_BASE}: {target} points back at {chain[0]}"]
            )
        chain.append(base)


def read_pipeline_yaml(path: str | Path) -> tuple[Any, str]:
    """Parse a pipeline file, with any ``same_as`` base resolved; errors name the file.

    A ``same_as`` file's ``components`` are settings over its base's components, merged the
    way a profile's overrides are (:func:`apply_overrides`); each must name a component the
    base has.
    """
    chain = pipeline_chain(path)
    data = read_yaml(chain[-1])
    for pointer in reversed(chain[:-1]):
        changes = read_yaml(pointer).get("components") or {}
        if not isinstance(changes, dict):
            raise PipelineError([f"{pointer}: components: expected a mapping of component names"])
        own = data.get("components") if isinstance(data, dict) else None
        own = own if isinstance(own, dict) else {}
        for name, change in changes.items():
            if name not in own:
                close = difflib.get_close_matches(str(name), [str(n) for n in own], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise PipelineError(
                    [f"{pointer}: components.{name}: its base has no component {name!r}{hint}"]
                )
            params = change.get("init_parameters", {}) if isinstance(change, dict) else None
            if (
                not isinstance(change, dict)
                or set(change) - {"type", "init_parameters"}
                or not isinstance(params, dict)
            ):
                raise PipelineError(
                    [
                        f"{pointer}: components.{name}: expected init_parameters (and "
                        "optionally type) to change"
                    ]
                )
        data = apply_overrides(data, changes)
    return data, str(path)


def pipeline_sha256(path: str | Path) -> str:
    """sha256 of a pipeline's bytes, every ``same_as`` base included (an eval run's key).

    A plain file hashes to the sha256 of its bytes, as before pointers existed, so runs made
    earlier still resume.
    """
    import hashlib

    from ragkit.atomic import file_sha256

    chain = pipeline_chain(path)
    if len(chain) == 1:
        return file_sha256(chain[0])
    digest = hashlib.sha256()
    for p in chain:
        digest.update(bytes.fromhex(file_sha256(p)))
    return digest.hexdigest()


def validate_pipeline_file(path: str | Path) -> list[str]:
    """Every problem in a pipeline file, one line each; empty when it is valid."""
    try:
        data, source = read_pipeline_yaml(path)
    except PipelineError as exc:
        return exc.problems
    specs, conns, problems = validate_data(data, source)
    if problems:
        return problems
    _, build_problems = _build(specs, conns, data, source)
    return build_problems


def override_search_dirs(path: str | Path) -> list[Path]:
    """Folders whose pipelines a profile may also target: shipped, ./pipelines, beside ``path``.

    A profile is shared by every pipeline (``generator`` means nothing to ``retrieve.yaml`` or to
    the indexer), so an override name absent from one pipeline is fine when another has it.
    """
    from ragkit.resources import shipped_dir

    here = Path(path).resolve().parent
    dirs = [
        shipped_dir("pipelines"),
        shipped_dir("indexers"),
        Path.cwd() / "pipelines",
        Path.cwd() / "indexers",
    ]
    dirs += [here, here.parent / "pipelines", here.parent / "indexers"]
    seen: list[Path] = []
    for d in dirs:
        d = d.resolve()
        if d.is_dir() and d not in seen:
            seen.append(d)
    return seen


def _component_names_in(dirs: list[Path]) -> set[str]:
    """Component names of every readable pipeline YAML in ``dirs`` (unreadable files are skipped)."""
    names: set[str] = set()
    for d in dirs:
        for f in sorted(d.glob("*.y*ml")):
            try:
                data = read_yaml(f)
            except ConfigError:
                continue
            comps = data.get("components") if isinstance(data, dict) else None
            if isinstance(comps, dict):
                names.update(str(n) for n in comps)
    return names


def check_override_names(
    data: Any,
    overrides: dict[str, dict[str, Any]] | None,
    source: str,
    search_dirs: list[Path],
    origin: str = "overrides",
) -> None:
    """Refuse an override naming a component that neither this pipeline nor any other one has.

    Raises:
        PipelineError: one line naming the unknown name, the closest match and this
            pipeline's components.
    """
    if not overrides or not isinstance(data, dict) or not isinstance(data.get("components"), dict):
        return
    own = [str(n) for n in data["components"]]
    missing = [n for n in overrides if n not in own]
    if not missing:
        return
    elsewhere = _component_names_in(search_dirs)
    for name in missing:
        if name in elsewhere:
            continue
        close = difflib.get_close_matches(name, own + sorted(elsewhere - set(own)), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PipelineError(
            [
                f"{origin}: components.{name}: no component {name!r} in {source} nor in any "
                f"pipeline in {', '.join(str(d) for d in search_dirs)}; {hint}"
                f"this pipeline's components: {', '.join(own)}"
            ]
        )


def merge_settings(current: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override``'s init parameters over ``current``'s; nested settings mappings merge by key.

    A profile that sets ``search: {iterations: 40}`` keeps the pipeline's other ``search``
    keys. A nested component (``{type, init_parameters}``) or any other value is replaced.
    """
    out = dict(current)
    for key, value in override.items():
        old = out.get(key)
        nested = isinstance(value, dict) and isinstance(old, dict)
        if nested and not (is_component_spec(value) or is_component_spec(old)):
            out[key] = merge_settings(old, value)
        else:
            out[key] = value
    return out


def apply_overrides(data: Any, overrides: dict[str, dict[str, Any]] | None) -> Any:
    """Apply profile overrides to components present in the pipeline (others are left alone).

    :func:`check_override_names` first makes sure every other name belongs to some pipeline.

    An override with ``type`` replaces the component (type and init parameters); one with only
    ``init_parameters`` updates the existing parameters (nested settings mappings key by key,
    see :func:`merge_settings`). A component nested as ``{type,
    init_parameters}`` under an init parameter of the same name is overridden the same way.
    """
    if not overrides or not isinstance(data, dict) or not isinstance(data.get("components"), dict):
        return data

    def apply(current: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
        if override.get("type"):
            return {
                "type": override["type"],
                "init_parameters": dict(override.get("init_parameters") or {}),
            }
        params = merge_settings(
            current.get("init_parameters") or {}, override.get("init_parameters") or {}
        )
        return {**current, "init_parameters": params}

    comps = dict(data["components"])
    for name, override in overrides.items():
        current = comps.get(name)
        if isinstance(current, dict):
            comps[name] = apply(current, override)
    # a component nested under the same name in another's init parameters gets it too
    # (e.g. adaptive_note.yaml's answerer.init_parameters.generator follows the profile)
    for cname, body in comps.items():
        params = body.get("init_parameters") if isinstance(body, dict) else None
        if not isinstance(params, dict):
            continue
        nested = {
            k: apply(v, overrides[k])
            for k, v in params.items()
            if k in overrides and is_component_spec(v)
        }
        if nested:
            comps[cname] = {**body, "init_parameters": {**params, **nested}}
    return {**data, "components": comps}


def load_pipeline(
    path: str | Path,
    store: RagkitStore | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    overrides_from: str = "overrides",
    override_origins: dict[str, str] | None = None,
) -> Pipeline:
    """Validate and build a pipeline from YAML; bind ``store`` to every store-using component.

    Args:
        path: pipeline YAML file.
        store: an open store shared by all components that read or write one.
        overrides: per component name, a replacement ``type``/``init_parameters`` (profiles).
            A name this pipeline lacks is skipped when a pipeline in
            :func:`override_search_dirs` has it, and is an error otherwise (a typo).
        overrides_from: what the overrides came from (e.g. ``profile cpu.yaml``), for errors.
        override_origins: for override keys set elsewhere than ``components.NAME...`` in that
            file, the pipeline path -> the key that set it (``split.split_overlap``).

    Returns:
        The Haystack pipeline, not yet warmed up.

    Raises:
        PipelineError: the file is invalid; ``problems`` lists each issue on one line.
    """
    data, source = read_pipeline_yaml(path)
    check_override_names(data, overrides, source, override_search_dirs(path), overrides_from)
    data = apply_overrides(data, overrides)
    specs, conns, problems = validate_data(data, source)
    if not problems:
        pipe, problems = _build(specs, conns, data, source)
    if problems:
        raise PipelineError(
            [
                attribute_problem(p, source, overrides, overrides_from, override_origins)
                for p in problems
            ]
        )
    if store is not None:
        bind_store(pipe, store)
    return pipe


def attribute_problem(
    problem: str,
    source: str,
    overrides: dict[str, dict[str, Any]] | None,
    overrides_from: str,
    origins: dict[str, str] | None = None,
) -> str:
    """Name the profile, not the pipeline file, when the bad value came from the profile.

    ``problem`` reads ``SOURCE: components.NAME.init_parameters.KEY: message``; when the
    override for ``NAME`` set ``KEY`` (or replaced ``NAME``'s type), the line names
    ``overrides_from`` and the key there, and says which pipeline it was applied to.
    """
    prefix = f"{source}: components."
    if not overrides or not problem.startswith(prefix):
        return problem
    path, sep, message = problem[len(source) + 2 :].partition(": ")
    if not sep:
        return problem
    parts = path.split(".")
    override = overrides.get(parts[1]) if len(parts) > 1 else None
    if not isinstance(override, dict):
        return problem
    params = override.get("init_parameters") or {}
    if override.get("type"):
        key_path = path  # the profile replaced the whole component
    elif len(parts) > 3 and parts[2] == "init_parameters" and parts[3] in params:
        key_path = ".".join(parts[:4])
    else:
        return problem
    where = (origins or {}).get(key_path, key_path) + path[len(key_path) :]
    return f"{overrides_from}: {where}: {message} (applied to {source})"


def bind_store(pipe: Pipeline, store: RagkitStore) -> None:
    """Hand one open store to every component that reads or writes a store.

    Only components deriving from :class:`ragkit.stores.components.StoreConsumer` get it
    (ragkit's store-bound components and the query embedder, which follows the store's model):
    the opt-in is the base class, so a component that merely has a ``bind_store`` attribute is
    left alone. The caller keeps the store and releases it.
    """
    from ragkit.stores.components import StoreConsumer

    for _, comp in pipe.walk():
        if isinstance(comp, StoreConsumer):
            comp.bind_store(store)


def run_inputs(
    pipe: Pipeline,
    question: str,
    top_k: int | None = None,
    streaming_callback: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Map a CLI question (and ``--top-k``, a streaming callback) onto open inputs by socket name.

    ``extra`` maps further socket names to values (``{"document": text}`` for ``--document``).

    ``--top-k`` caps what retrieval hands on: it goes to the ranking stage, the components taking
    ``top_k`` that also receive documents from others (e.g. the fusion joiner), so upstream
    retrievers keep their wider candidate lists. Without such a stage every ``top_k`` gets it.
    """
    inputs: dict[str, dict[str, Any]] = {}
    open_inputs = pipe.inputs()
    with_top_k = [c for c, socks in open_inputs.items() if "top_k" in socks]
    receivers = {r for _, r, d in pipe.graph.edges(data=True) if d["to_socket"].name == "documents"}
    ranking = [c for c in with_top_k if c in receivers]
    targets = ranking or with_top_k
    for comp, sockets in open_inputs.items():
        for socket in sockets:
            if socket in QUERY_INPUTS:
                inputs.setdefault(comp, {})[socket] = question
            elif socket == "top_k" and top_k is not None and comp in targets:
                inputs.setdefault(comp, {})[socket] = top_k
            elif socket == "streaming_callback" and streaming_callback is not None:
                inputs.setdefault(comp, {})[socket] = streaming_callback
            elif extra and socket in extra:
                inputs.setdefault(comp, {})[socket] = extra[socket]
    if not any(s in QUERY_INPUTS for socks in inputs.values() for s in socks):
        raise PipelineError(
            ["pipeline has no open 'query', 'text' or 'question' input to take the question"]
        )
    return inputs


def close_pipeline(pipe: Pipeline) -> None:
    """Release what components hold (stores, models)."""
    for _, comp in pipe.walk():
        close = getattr(comp, "close", None)
        if callable(close):
            close()
