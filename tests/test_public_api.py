"""The curated public API: __all__ lists exactly the exported names, and each one resolves."""

from __future__ import annotations

import ragkit


def test_all_names_resolve() -> None:
    assert ragkit.__all__ == sorted(ragkit.__all__)
    for name in ragkit.__all__:
        assert getattr(ragkit, name) is not None, name


def test_py_typed_shipped() -> None:
    from pathlib import Path

    assert (Path(ragkit.__file__).parent / "py.typed").exists()


def test_every_error_class_is_exported() -> None:
    """Users catch what ragkit raises: every RagkitError subclass is a top-level name."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(ragkit.__path__, "ragkit."):
        importlib.import_module(info.name)
    seen: list[type] = []
    todo = [ragkit.RagkitError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    ours = [c for c in seen if c.__module__.startswith("ragkit")]
    assert len(ours) > 20
    missing = [c.__name__ for c in ours if getattr(ragkit, c.__name__, None) is not c]
    assert not missing, f"error classes not exported from ragkit: {missing}"
