"""Follow title links from retrieved passages to the second-hop passages a question needs.

A multi-hop question ("Who is the mother of the director of *Polish Easter*?") retrieves the
first hop (the film's page); the second hop (the director's page) shares no words with the
question, so neither BM25 nor the dense retriever ranks it. The first hop names it, though:
over titled passages (Wikipedia paragraphs, files named for their subject), a passage's title
that appears in a retrieved passage's text is a link. In the first 100 pooled 2Wiki questions,
87 of the 94 gold passages the default pipeline missed were named by a passage it retrieved
(docs/methods/links.md).

:class:`TitleIndex` finds the store's titles in a text as whole-word n-grams (case and accents
ignored, a trailing ``(2013 film)`` dropped, titles under 4 characters skipped).
:class:`LinkedPassages` keeps the first ``keep`` retrieved passages and adds up to ``add``
passages that the question or the first ``follow`` passages name, closest to the question
first. It calls no model: the judge of a hop is the link itself, a retrieval-side test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

from haystack import Document, component

from ragkit.errors import InvalidParameter, check_count, clip
from ragkit.stores.components import StoreBound
from ragkit.stores.store import RagkitStore  # at run time: the loader resolves the hints
from ragkit.text import match_text, title_key

__all__ = ["LINKED_FROM_KEY", "LinkedPassages", "TitleIndex"]

LINKED_FROM_KEY = "linked_from"
"""``meta`` key of an added passage: the title of the passage (or ``"question"``) naming it."""


class TitleIndex:
    """The titles of a corpus, found in any text as whole words (see :func:`title_key`)."""

    def __init__(self, titles: Mapping[str, Sequence[str]]) -> None:
        """Index ``titles`` (title -> ids of the chunks with that title)."""
        self._ids: dict[str, list[str]] = {}
        self._title: dict[str, str] = {}
        longest = 0
        for title, ids in titles.items():
            key = title_key(title)
            if key is None:
                continue
            self._ids.setdefault(key, []).extend(ids)
            self._title.setdefault(key, title)
            longest = max(longest, len(key.split()))
        self._longest = longest

    def __len__(self) -> int:
        return len(self._ids)

    def mentions(self, text: str) -> list[tuple[str, list[str]]]:
        """``(title, ids)`` of each title ``text`` names, in order of first mention.

        At each word the longest title wins, so "New York City" is not also "New York".
        """
        words = match_text(text).split()
        found: list[tuple[str, list[str]]] = []
        seen: set[str] = set()
        i = 0
        while i < len(words):
            step = 1
            for n in range(min(self._longest, len(words) - i), 0, -1):
                key = " " + " ".join(words[i : i + n]) + " "
                if key in self._ids:
                    if key not in seen:
                        seen.add(key)
                        found.append((self._title[key], self._ids[key]))
                    step = n
                    break
            i += step
        return found


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


@component
class LinkedPassages(StoreBound):
    """Add the passages that the question or the top retrieved passages name by title.

    The output is the first ``keep`` input passages, then up to ``add`` linked passages (the
    second hop), closest to the question first when a ``query_embedding`` is given, else in
    the order they are named. Each added passage carries ``meta["linked_from"]``.

    Examples:
        >>> from haystack import Document
        >>> from ragkit import LinkedPassages, MemoryStore, open_store, release_store
        >>> store = open_store(MemoryStore())
        >>> film = Document(content="Polish Easter is a 2011 film directed by Jakob Ziemnicki.",
        ...                 meta={"title": "Polish Easter"})
        >>> director = Document(content="Jakob Ziemnicki is a German director, son of Anna.",
        ...                     meta={"title": "Jakob Ziemnicki"})
        >>> store.write([film, director])
        2
        >>> links = LinkedPassages(store=store, keep=1, add=1)
        >>> out = links.run(query="Who is the mother of the director of Polish Easter?",
        ...                 documents=[film])["documents"]
        >>> [d.meta["title"] for d in out], out[1].meta["linked_from"]
        (['Polish Easter', 'Jakob Ziemnicki'], 'Polish Easter')
        >>> release_store(store)
    """

    def __init__(
        self,
        store: str | RagkitStore | None = None,
        keep: int = 5,
        add: int = 2,
        follow: int = 3,
    ) -> None:
        """Create the component; the store's titles are read on first use.

        Args:
            store: store location or open store (``ragkit.load_pipeline`` binds its own).
            keep: Input passages kept, in their order (the reader's usual top-k).
            add: Most linked passages added after them.
            follow: How many of the first input passages have their links followed (the
                question's are followed first, always).

        Raises:
            InvalidParameter: A count is not an integer >= 1 (``add`` may be 0).
        """
        self.init_store(store)
        self.keep = check_count("keep", keep)
        if isinstance(add, bool) or not isinstance(add, int) or add < 0:
            raise InvalidParameter("add", f"must be an integer >= 0, got {clip(add)}")
        self.add = add
        self.follow = check_count("follow", follow)
        self._index: TitleIndex | None = None

    def bind_store(self, store: RagkitStore) -> None:
        """Use ``store`` (its titles are read again on the next run)."""
        StoreBound.bind_store(self, store)  # @component rebuilds the class: no bare super()
        self._index = None

    def warm_up(self) -> None:
        """Open the store and read its titles (one pass over the payloads)."""
        if self._index is None:
            self._index = TitleIndex(self.open_bound_store().title_ids())

    def _linked(self, query: str, documents: Sequence[Document]) -> list[tuple[str, str]]:
        """``(chunk id, naming title)`` of each linked chunk not in ``documents``, in order."""
        assert self._index is not None
        present = {d.id for d in documents}
        sources: Iterable[tuple[str, str]] = [("question", query)] + [
            (str(d.meta.get("title") or d.id), d.content or "") for d in documents[: self.follow]
        ]
        out: list[tuple[str, str]] = []
        for name, text in sources:
            for _, ids in self._index.mentions(text):
                for chunk_id in ids:
                    if chunk_id not in present:
                        present.add(chunk_id)
                        out.append((chunk_id, name))
        return out

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        query_embedding: list[float] | None = None,
        top_k: int | None = None,
    ) -> dict[str, list[Document]]:
        """The first ``keep`` passages, then up to ``add`` passages they or ``query`` name.

        Args:
            query: The question (titles it names are followed first).
            documents: Retrieved passages, best first.
            query_embedding: Ranks the linked passages by cosine similarity to the question;
                without it they keep the order in which they are named.
            top_k: This call's ``keep`` (``ragkit query --top-k``); the links come on top.

        Raises:
            InvalidParameter: ``top_k`` is not an integer >= 1.
        """
        self.warm_up()
        keep = self.keep if top_k is None else check_count("top_k", top_k)
        kept = list(documents[:keep])
        linked = self._linked(query, kept) if self.add else []
        if not linked:
            return {"documents": kept}
        naming = dict(linked)
        found = self.open_bound_store().documents_by_id([i for i, _ in linked])
        if query_embedding is not None:
            order = {d.id: n for n, d in enumerate(found)}
            found.sort(
                key=lambda d: (
                    -_cosine(query_embedding, d.embedding) if d.embedding else 0.0,
                    order[d.id],
                )
            )
        added = [
            dataclasses.replace(
                d, embedding=None, score=None, meta={**d.meta, LINKED_FROM_KEY: naming[d.id]}
            )
            for d in found[: self.add]
        ]
        return {"documents": kept + added}
