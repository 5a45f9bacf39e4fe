"""Shared plumbing for components that read or write a ragkit store."""

from __future__ import annotations

from typing import ClassVar

from ragkit.config import store_from_location
from ragkit.stores.store import ModelFiles, RagkitStore, open_store, release_store


class StoreBound:
    """Mixin: a component bound to a store by location, or handed an open store by the loader.

    ``store`` is the JSON-basic init parameter (a directory, ``:memory:`` or a URL) so YAML
    round-trips; :meth:`bind_store` lets ``ragkit.load_pipeline`` share one open store among all
    components of a pipeline, as Qdrant local mode needs.
    """

    store: str | None
    embedding_model: str = "minilm"
    model_files: ClassVar[ModelFiles | None] = None
    """Model name -> local files; components set :func:`ragkit.models.registry.model_files`
    (the store layer does not import the models) so the store's model check knows aliases."""
    _store_handle: RagkitStore | None = None
    _owns_store: bool = False

    def bind_store(self, store: RagkitStore) -> None:
        """Use an already open store instead of opening one from ``self.store``."""
        self._store_handle = store
        self._owns_store = False

    def current_store(self) -> RagkitStore | None:
        """The store bound or opened so far (None before ``bind_store`` or ``warm_up``)."""
        return self._store_handle

    def open_bound_store(self) -> RagkitStore:
        """The bound store, opening it from ``self.store`` on first use."""
        if self._store_handle is None:
            self._store_handle = open_store(
                store_from_location(self.store),
                embedding_model=self.embedding_model,
                model_files=type(self).model_files,
            )
            self._owns_store = True
        return self._store_handle

    def close(self) -> None:
        """Release a store this component opened itself."""
        if self._store_handle is not None and self._owns_store:
            release_store(self._store_handle)
        self._store_handle = None
        self._owns_store = False
