"""What every ragkit store shares: its format constants, its error, and its Qdrant set-up.

Both the store (:mod:`ragkit.stores.store`) and the damage diagnosis that runs before it opens
anything (:mod:`ragkit.stores.damage`) need these; keeping them here lets the imports run one
way (store -> damage -> layout) instead of in a circle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragkit.errors import RagkitError

__all__ = [
    "DEFAULT_ENGINE",
    "EMBEDDING_DIM",
    "LOCAL_HINT_CHUNKS",
    "STORE_FORMAT",
    "StoreError",
    "local_qdrant",
]

STORE_FORMAT = 1
EMBEDDING_DIM = 384  # MiniLM's; the dimension of a new store when nothing else is known
# the vector engine of a new embedded store without `engine:`; stores record theirs in store.json.
# Qdrant Edge (HNSW) since it keeps every guarantee local mode keeps (tests/stores/test_edge_faults.py)
DEFAULT_ENGINE = "edge"
# past this many chunks a local-mode store says once that Qdrant Edge is faster, and how to move
LOCAL_HINT_CHUNKS = 20_000


class StoreError(RagkitError, RuntimeError):
    """The store cannot be opened or is inconsistent; the message says what to do."""


def local_qdrant(path: Path, collection: str, embedding_dim: int) -> Any:
    """A Haystack document store on Qdrant local mode in ``path``, set up as every ragkit store.

    Also what ``ragkit repair`` rebuilds a lost ``meta.json`` from, so the two cannot differ.
    """
    from haystack_integrations.document_stores.qdrant import QdrantDocumentStore

    return QdrantDocumentStore(
        path=str(path),
        index=collection,
        embedding_dim=embedding_dim,
        similarity="cosine",
        progress_bar=False,
        write_batch_size=256,
    )
