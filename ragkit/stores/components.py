"""Shared plumbing for components that read or write a ragkit store.

Binding is explicit: ``ragkit.load_pipeline`` (and :func:`ragkit.pipeline.bind_store`) hands the
pipeline's open store only to components that derive from :class:`StoreConsumer`, never to
whatever happens to have a ``bind_store`` attribute.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from ragkit.config import EmbeddedStore, ServerStore, store_from_location
from ragkit.errors import InvalidParameter, clip
from ragkit.stores.store import ModelFiles, RagkitStore, open_store, release_store

__all__ = ["StoreBound", "StoreConsumer", "store_location"]


class StoreConsumer:
    """Base of the components that take the pipeline's open store (the explicit opt-in).

    :func:`ragkit.pipeline.bind_store` calls :meth:`bind_store` on every component that is an
    instance of this class, and on no other: a component of your own that needs the store
    ragkit opened (Qdrant local mode allows one client per directory) subclasses it. A plain
    base class, not an ``abc.ABC`` or a ``typing.Protocol``, because Haystack's ``@component``
    rebuilds each class with its own metaclass, which would conflict with theirs.
    """

    def bind_store(self, store: RagkitStore) -> None:
        """Use ``store``, opened by the caller, which also releases it."""
        raise NotImplementedError(f"{type(self).__name__} must implement bind_store")


def store_location(store: RagkitStore) -> str | None:
    """The ``store`` init parameter that reopens ``store``: its directory or URL, else None.

    None when no plain location gives the same store: a ``:memory:`` store (its documents live
    in this process only), or a store opened with settings a location cannot carry (another
    collection, an API key variable, shards...). The vector engine is left out of the
    comparison: reopening an existing store takes the engine recorded in it.
    """
    config = store.config
    if isinstance(config, EmbeddedStore):
        location = config.path
    elif isinstance(config, ServerStore):
        location = config.url
    else:
        return None
    reopened = store_from_location(location)
    if type(reopened) is not type(config):
        return None
    same = reopened.model_dump(exclude={"engine"}) == config.model_dump(exclude={"engine"})
    return location if same else None


class StoreBound(StoreConsumer):
    """Mixin: a component bound to a store by location, by an open store, or by the loader.

    ``store`` is either a location (a directory, ``:memory:`` or a URL: JSON-basic, so YAML
    round-trips) or, in Python, an open :class:`~ragkit.stores.store.RagkitStore`, so a
    component works on its own without ``ragkit.load_pipeline``. :meth:`bind_store` lets the
    loader share one open store among all components of a pipeline, as Qdrant local mode needs.
    A store handed in (either way) belongs to the caller: :meth:`close` never releases it.
    """

    store: str | None
    embedding_model: str | None = None
    model_files: ClassVar[ModelFiles | None] = None
    """Model name -> local files; components set :func:`ragkit.models.registry.model_files`
    (the store layer does not import the models) so the store's model check knows aliases."""
    _store_handle: RagkitStore | None = None
    _given_store: RagkitStore | None = None
    _owns_store: bool = False

    def init_store(self, store: str | RagkitStore | None) -> None:
        """Set the ``store`` init parameter from a location or an open store (``__init__``).

        An open store is used as is; ``self.store`` keeps its location (None for a
        ``:memory:`` store), which is what :meth:`to_dict` writes.

        Raises:
            InvalidParameter: ``store`` is neither a location string, None nor a RagkitStore.
        """
        if isinstance(store, RagkitStore):
            self._given_store = self._store_handle = store
            self._owns_store = False
            self.store = store_location(store)
        elif store is None or isinstance(store, str):
            self.store = store
        else:
            raise InvalidParameter(
                "store",
                "must be a store location (a directory, ':memory:' or a Qdrant URL) or an open "
                f"ragkit store (ragkit.open_store), got {clip(store)}",
            )

    def serialized_store(self) -> str | None:
        """``store`` as ``to_dict`` writes it: the location, also for an open store that has one.

        Raises:
            InvalidParameter: The component was given an open store that no location reopens
                (a ``:memory:`` store, or one with a non-default collection...).
        """
        if self._given_store is not None and self.store is None:
            kind = self._given_store.config.kind
            raise InvalidParameter(
                "store",
                f"{type(self).__name__} was given an open {kind} store, which no location "
                "reopens, so the component cannot be serialized; give it the store's directory "
                "or URL (store='PATH') and share the open store with ragkit.pipeline.bind_store",
            )
        return self.store

    def to_dict(self) -> dict[str, Any]:
        """Serialize like Haystack's default (init parameters by attribute), ``store`` by location.

        Raises:
            InvalidParameter: See :meth:`serialized_store`.
        """
        from haystack.core.errors import SerializationError
        from haystack.core.serialization import default_to_dict

        params: dict[str, Any] = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if not hasattr(self, name) and param.default is param.empty:
                raise SerializationError(
                    f"{type(self).__name__} does not keep its init parameter {name!r}"
                )
            params[name] = getattr(self, name, param.default)
        params["store"] = self.serialized_store()
        return default_to_dict(self, **params)

    def bind_store(self, store: RagkitStore) -> None:
        """Use an already open store instead of opening one from ``self.store``."""
        self._store_handle = store
        self._owns_store = False

    def asked_embedding_model(self) -> str | None:
        """The model this component opens its store with; None takes the store's record.

        Readers take the record; a writer overrides this, because a store it creates must
        record the model its chunks were embedded with.
        """
        return self.embedding_model

    def current_store(self) -> RagkitStore | None:
        """The store bound or opened so far (None before ``bind_store`` or ``warm_up``)."""
        return self._store_handle

    def open_bound_store(self) -> RagkitStore:
        """The bound store, opening it from ``self.store`` on first use."""
        if self._store_handle is None:
            self._store_handle = open_store(
                store_from_location(self.store),
                embedding_model=self.asked_embedding_model(),
                model_files=type(self).model_files,
            )
            self._owns_store = True
        return self._store_handle

    def close(self) -> None:
        """Release a store this component opened itself; a store handed to ``__init__`` stays."""
        if self._store_handle is not None and self._owns_store:
            release_store(self._store_handle)
        self._store_handle = self._given_store
        self._owns_store = False
