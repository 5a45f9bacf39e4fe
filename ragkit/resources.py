"""The shipped pipelines, indexers and profiles, found the same way in a checkout and an install.

The repository keeps them in top-level ``pipelines/``, ``indexers/`` and ``configs/`` folders; the
wheel build (``setup.py``) copies them into the package as ``ragkit/data/<folder>/``, where
:mod:`importlib.resources` finds them in an installed ragkit. A source checkout has no such copy,
so the top-level folder beside the package is used instead. A user's own file always wins: a
path that exists, then ``<cwd>/<folder>/<name>.yaml``, then the shipped one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from ragkit.errors import ConfigError, RagkitError

__all__ = [
    "SHIPPED_KINDS",
    "PipelineNotFoundError",
    "ResourceNotFoundError",
    "find_pipeline_file",
    "resolve_yaml",
    "shipped_dir",
    "shipped_files",
]

Kind = Literal["pipelines", "indexers", "configs"]
#: The folders shipped with the package (the repository's top-level folders of the same name).
SHIPPED_KINDS: tuple[str, ...] = ("pipelines", "indexers", "configs")


class ResourceNotFoundError(ConfigError):
    """A pipeline, indexer or profile name matches no file; the message lists the known names."""


class PipelineNotFoundError(RagkitError, LookupError):
    """The query pipeline or indexer to run matches no file: exit status 1, not 2.

    ``ragkit index``, ``repair`` and ``query`` have always exited 1 for an unknown ``--pipeline``
    or ``--indexer`` (scripts may test for it), while :class:`ResourceNotFoundError` is invalid
    input (2). This class keeps that status for the library calls behind those commands; the
    message is :func:`resolve_yaml`'s, listing the known names.
    """


def shipped_dir(kind: Kind) -> Path:
    """The folder of shipped ``kind`` files: the installed package's copy, else the checkout's.

    Args:
        kind: ``"pipelines"``, ``"indexers"`` or ``"configs"``.

    Returns:
        An existing directory.

    Raises:
        ValueError: For another kind.
        ResourceNotFoundError: When neither location exists (a broken install).
    """
    if kind not in SHIPPED_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SHIPPED_KINDS)}, not {kind!r}")
    packaged = resources.files("ragkit").joinpath("data", kind)
    # pip installs ragkit as plain files, so the Traversable is a real filesystem path
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / kind
    if checkout.is_dir():
        return checkout
    raise ResourceNotFoundError(
        f"ragkit's shipped {kind}/ folder is missing (looked in {packaged} and {checkout}); "
        "reinstall ragkit (`pip install ragkit`, or `pip install .` from a checkout)"
    )


def shipped_files(kind: Kind) -> list[Path]:
    """The shipped ``*.yaml`` files of ``kind``, sorted by name."""
    return sorted(shipped_dir(kind).glob("*.yaml"))


def resolve_yaml(name: str | Path, kind: Kind, what: str | None = None) -> Path:
    """Resolve a pipeline, indexer or profile given as a path or as a bare name.

    The user's files override the shipped ones: an existing file path first, then
    ``<cwd>/<kind>/<name>`` or ``<name>.yaml``, then the shipped file of that name.

    Args:
        name: A file path, or a name such as ``"rag"`` or ``"rag.yaml"``.
        kind: ``"pipelines"``, ``"indexers"`` or ``"configs"``.
        what: How the error message names the thing (default: ``kind`` without the s).

    Returns:
        The file to read.

    Raises:
        ResourceNotFoundError: Nothing matches; the message lists the shipped names.
    """
    path = Path(name)
    if path.is_file():
        return path
    for base in (Path.cwd() / kind, shipped_dir(kind)):
        for cand in (base / path, base / f"{path}.yaml"):
            if cand.is_file():
                return cand
    known = ", ".join(p.stem for p in shipped_files(kind))
    label = what or kind.rstrip("s")
    raise ResourceNotFoundError(f"unknown {label} {str(name)!r}: no such file; known: {known}")


def find_pipeline_file(name: str | Path, kind: Kind, what: str | None = None) -> Path:
    """:func:`resolve_yaml` for the pipeline or indexer a run is about to load.

    Args:
        name: A file path or a shipped/user name (``"rag"``, ``"default"``).
        kind: ``"pipelines"`` or ``"indexers"``.
        what: How the message names the thing (``"--pipeline"``, ``"indexer"``).

    Returns:
        The YAML file to load.

    Raises:
        PipelineNotFoundError: Nothing matches; the message lists the shipped names.
    """
    try:
        return resolve_yaml(name, kind, what)
    except ResourceNotFoundError as exc:
        raise PipelineNotFoundError(str(exc)) from None
