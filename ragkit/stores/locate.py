"""Open the store that a ``--store`` value (or the profile) names, with the checks runs share.

``ragkit index``, ``query``, ``stats`` and the library calls behind them all turn a location
into an open store the same way; keeping that here means a missing store is reported with the
same line (and the command that creates it) whichever front end asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ragkit.config import EmbeddedStore, Profile, store_from_location

if TYPE_CHECKING:
    from ragkit.stores.store import ModelFiles, RagkitStore

__all__ = ["explicit_embedding_model", "open_store_at"]


def open_store_at(
    location: str | None,
    profile: Profile,
    *,
    must_exist: bool,
    embedding_model: str | None = None,
    embedding_dim: int | None = None,
    read_only: bool = False,
    model_files: ModelFiles | None = None,
) -> RagkitStore:
    """Open the store at ``location`` (a directory, ``:memory:`` or a URL; None: the profile's).

    Pair with :func:`ragkit.stores.store.release_store`.

    Args:
        location: What ``--store`` says; None takes ``profile.store``.
        profile: The profile whose store settings (engine, collection) apply.
        must_exist: Refuse an embedded store that was never indexed instead of creating it
            (queries and repairs read a store; only indexing makes one).
        embedding_model: The model the caller embeds with; None takes the store's record.
        embedding_dim: That model's dimension; None takes the store's record.
        read_only: Open for reading only.
        model_files: Model name -> local files, so two names of one model match (pass
            :func:`ragkit.models.registry.model_files`); None: names must be equal.

    Returns:
        The open store.

    Raises:
        ConfigError: ``location`` is empty (exit status 2).
        StoreError: The path is a file, or holds no ragkit store when ``must_exist``.
    """
    from ragkit.stores.damage import holds_store
    from ragkit.stores.store import StoreError, open_store

    cfg = store_from_location(location, profile)
    if must_exist and isinstance(cfg, EmbeddedStore):
        d = Path(cfg.path).expanduser()
        if d.exists() and not d.is_dir():
            raise StoreError(f"store path {d} is a file; give a directory for --store")
        # a store whose store.json is gone is a damaged store, not none (see diagnose_store)
        if not holds_store(d):
            raise StoreError(f"no ragkit store at {d}; run `ragkit index PATH --store {d}` first")
    return open_store(
        cfg,
        embedding_model=embedding_model,
        embedding_dim=embedding_dim,
        read_only=read_only,
        model_files=model_files,
    )


def explicit_embedding_model(profile: Profile) -> str | None:
    """The profile's embedding model if it names one; else None (queries take the store's)."""
    return profile.embedding.model if "model" in profile.embedding.model_fields_set else None
