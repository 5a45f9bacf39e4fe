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
