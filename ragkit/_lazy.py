"""Lazy (PEP 562) package exports, written once for every ragkit package that has them.

A package lists ``name -> module`` and binds the two functions this returns as its
``__getattr__`` and ``__dir__``: importing the package then costs nothing, and a name's module
(Haystack, torch, ...) is imported on first use only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: The package's ``__name__`` (for errors and relative module names).
        exports: Public name -> module, absolute (``ragkit.x.y``) or relative to ``package``.
        namespace: The package's ``globals()``; a loaded name is cached there.

    Returns:
        The module-level ``__getattr__`` and ``__dir__`` functions.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = module if module.startswith("ragkit") else f"{package}.{module}"
        value = getattr(importlib.import_module(target), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
