"""Store comparisons shared by the ``--ray`` tests: chunk for chunk, vectors within 1e-6."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ragkit.config import EmbeddedStore
from ragkit.indexing.manifest import Manifest
from ragkit.stores.store import open_store, release_store

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample"


def chunks(store: Path) -> dict[str, tuple[str, list[float], str, int]]:
    """id -> (text, vector, source, chunk index) of every chunk; duplicates fail."""
    st = open_store(EmbeddedStore(path=str(store)), read_only=True)
    try:
        docs = st.qdrant.filter_documents()
        assert st.stats()["bm25"]["docs"] == len(docs)
    finally:
        release_store(st)
    out = {
        d.id: (d.content, list(d.embedding), d.meta["source"], d.meta["chunk_index"]) for d in docs
    }
    assert len(out) == len(docs), "duplicate chunk ids"
    return out


def assert_same_store(got: Path, want: Path) -> None:
    """Same ids, texts and sources; vectors within 1e-6; every manifest entry done, no gaps."""
    a, b = chunks(got), chunks(want)
    assert sorted(a) == sorted(b)
    for cid, (text, vector, source, index) in b.items():
        assert a[cid][0] == text and a[cid][2:] == (source, index)
        assert max(abs(x - y) for x, y in zip(a[cid][1], vector, strict=True)) <= 1e-6
    manifest = Manifest.load(got / "manifest.json")
    per_source = Counter(source for _, _, source, _ in a.values())
    assert set(per_source) == set(manifest.files)
    for src, entry in manifest.files.items():
        assert entry.status == "done" and per_source[src] == entry.chunks, src
