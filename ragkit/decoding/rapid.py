"""RAPID's long-document side: the target reads the whole document, the drafter retrieved chunks.

For one document and one question this module builds the two prompts of retrieval-augmented
speculative decoding (METHODS.md section 5.1) and keeps the expensive part, the target's KV
prefix over the document, on disk:

* **Target prompt**: ``instruction + document + question`` in the target's chat template. It is
  split where the question starts (:func:`split_prompt`), so the prefix (everything before the
  question) is the same for every question on the document and its KV state is computed once
  and saved (:class:`DocumentPrefixStore`, keyed by the model's identity and the prefix's
  content hash). A second question loads it instead of re-reading the document.
* **Drafter prompt**: the same template over the RAG context: the document split into
  ``chunk_tokens``-token chunks (the target's tokenizer), the chunks ranked by BM25 against the
  question (ragkit's own :class:`~ragkit.stores.bm25.BM25Index`, in memory), the best
  ``ceil(rag_tokens / chunk_tokens)`` put back in document order and joined by blank lines.
  ``rag_tokens = max(ceil(L / ratio), min(budget_tokens, L))`` for a document of ``L`` tokens
  (RAPID: ratio 32, budget 4096 on GPUs; ragkit's CPU default is 1024). When no chunk shares
  a term with the question, the leading chunks are used.
* **Truncation policy** (a document longer than the target's context, never silent): the
  document may take ``context_length - template - reserve_tokens`` tokens. ``middle`` (default,
  LongBench's convention) keeps the first and last halves of that budget and replaces the
  middle by an omission line; ``head`` keeps the beginning; ``error`` refuses. What was cut is
  returned as a :class:`Truncation` (the CLI prints a warning line and ``--json`` carries it).

Pure Python over the :class:`~ragkit.models.driver.DecoderLM` protocol (``encode``/``decode``/
``chat_template_text``/``prefill``); neither torch nor llama_cpp is imported here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragkit.errors import InvalidParameter
from ragkit.models.errors import ContextLengthError, PrefixCacheError
from ragkit.text import bm25_rank

__all__ = [
    "DEFAULT_INSTRUCTION",
    "Chunk",
    "DocumentPrefixStore",
    "RapidPrompt",
    "Truncation",
    "TruncationPolicy",
    "build_rapid_prompt",
    "chunk_document",
    "rag_tokens",
    "retrieve_chunks",
    "split_prompt",
]

logger = logging.getLogger(__name__)

TruncationPolicy = Literal["middle", "head", "error"]
DEFAULT_INSTRUCTION = "Answer the question using the document. Reply with a short answer only."
_MARKER = "\u2063RAGKIT-QUESTION\u2063"
_OMITTED = "\n\n[... {n} tokens omitted ...]\n\n"


# ---------------------------------------------------------------------- chunks and retrieval


@dataclass
class Chunk:
    """A piece of the document.

    Attributes:
        index: Position in the document (0-based).
        text: The chunk's text.
        start: Character offset of the chunk in the (decoded) document text.
        end: Character offset just past the chunk.
        tokens: Its length in target tokens.
        score: BM25 score against the question (``None`` until retrieved).
    """

    index: int
    text: str
    start: int
    end: int
    tokens: int
    score: float | None = None


def _clean_end(lm: Any, ids: Sequence[int], start: int, end: int) -> int:
    """Move ``end`` forward (at most 4 tokens) so ``ids[start:end]`` does not split a character."""
    limit = min(len(ids), end + 4)
    while end < limit and lm.decode(ids[start:end]).endswith("\ufffd"):
        end += 1
    return end


def chunk_document(lm: Any, text: str, chunk_tokens: int = 128) -> list[Chunk]:
    """Split ``text`` into consecutive chunks of about ``chunk_tokens`` target tokens (no overlap).

    Boundaries fall on token boundaries (moved by a token or two where a token boundary would
    split a multi-byte character), so the chunks concatenate to the decoded document.

    Args:
        lm: The target (its tokenizer counts the tokens).
        text: The document.
        chunk_tokens: Tokens per chunk (RAPID: 128).

    Returns:
        The chunks in document order.
    """
    if chunk_tokens < 1:
        raise InvalidParameter("chunk_tokens", f"must be >= 1, got {chunk_tokens}")
    ids = list(lm.encode(text))
    chunks: list[Chunk] = []
    start = offset = 0
    while start < len(ids):
        end = _clean_end(lm, ids, start, min(len(ids), start + chunk_tokens))
        piece = lm.decode(ids[start:end])
        chunks.append(Chunk(len(chunks), piece, offset, offset + len(piece), end - start))
        offset += len(piece)
        start = end
    return chunks


def rag_tokens(document_tokens: int, budget_tokens: int, ratio: int = 32) -> int:
    """RAPID's drafter context size: ``max(ceil(L / ratio), min(budget, L))`` tokens."""
    return max(math.ceil(document_tokens / ratio), min(budget_tokens, document_tokens))


def retrieve_chunks(chunks: Sequence[Chunk], question: str, n: int) -> list[Chunk]:
    """The ``n`` chunks BM25 ranks best for ``question``, in document order.

    Falls back to the leading chunks when no chunk shares a term with the question (BM25 scores
    them all zero), so the drafter always has context to draft from.
    """
    if n <= 0 or not chunks:
        return []
    if n >= len(chunks):
        return list(chunks)
    ranked = bm25_rank([c.text for c in chunks], question, top_k=n)
    hits = [(i, s) for i, s in ranked if s > 0]
    if not hits:
        return list(chunks[:n])
    picked = []
    for i, score in hits:
        chunk = chunks[i]
        picked.append(Chunk(chunk.index, chunk.text, chunk.start, chunk.end, chunk.tokens, score))
    return sorted(picked, key=lambda c: c.index)


# ---------------------------------------------------------------------- prompts


def _render(lm: Any, instruction: str, context: str, question: str) -> str:
    content = f"{instruction}\n\nDocument:\n{context}\n\nQuestion: {question}"
    return str(lm.chat_template_text([{"role": "user", "content": content}]))


def split_prompt(
    lm: Any, instruction: str, context: str, question: str
) -> tuple[list[int], list[int]]:
    """Prompt ids split where the question starts: (prefix over the context, suffix).

    The prefix depends only on the instruction and the context, so its KV state serves every
    question. Generation always uses ``prefix + suffix`` (both encoded separately), the same
    ids with or without a cached prefix.
    """
    text = _render(lm, instruction, context, _MARKER)
    cut = text.index(_MARKER)
    prefix = list(lm.encode(text[:cut]))
    suffix = list(lm.encode(text[cut:].replace(_MARKER, question)))
    return prefix, suffix


@dataclass
class Truncation:
    """How a document longer than the target's context was cut.

    Attributes:
        policy: ``middle`` or ``head``.
        document_tokens: The document's full length in target tokens.
        kept_tokens: Document tokens the target reads.
        context_tokens: The target's context (``n_ctx``).
        dropped: ``[start, end)`` token range of the document that was left out.
    """

    policy: str
    document_tokens: int
    kept_tokens: int
    context_tokens: int
    dropped: tuple[int, int]

    def message(self) -> str:
        """One warning line for the user."""
        where = "from the middle" if self.policy == "middle" else "at the end"
        return (
            f"the document has {self.document_tokens} tokens, more than fits the target's "
            f"{self.context_tokens}-token context: {self.document_tokens - self.kept_tokens} "
            f"tokens {where} (tokens {self.dropped[0]}-{self.dropped[1]}) were left out "
            f"(truncation: {self.policy}; raise n_ctx to read all of it)"
        )


def fit_document(
    lm: Any,
    text: str,
    *,
    instruction: str,
    reserve_tokens: int,
    policy: TruncationPolicy = "middle",
) -> tuple[str, int, Truncation | None]:
    """The document text the target reads, its token count, and what was cut (if anything).

    Args:
        lm: The target.
        text: The whole document.
        instruction: The prompt's instruction (its template tokens count against the context).
        reserve_tokens: Tokens kept free for the question and the answer.
        policy: ``middle``, ``head`` or ``error`` (see the module docstring).

    Raises:
        ContextLengthError: ``policy == "error"`` and the document does not fit, or the
            context cannot even hold the template and the reserve.
    """
    ids = list(lm.encode(text))
    overhead = len(split_prompt(lm, instruction, "", "")[0])
    context = int(lm.context_length)
    room = context - overhead - reserve_tokens
    if room <= 0:
        raise ContextLengthError(
            f"the target's {context}-token context cannot hold the prompt template "
            f"({overhead} tokens) and reserve_tokens={reserve_tokens}; raise n_ctx"
        )
    if len(ids) <= room:
        return text, len(ids), None
    if policy == "error":
        raise ContextLengthError(
            f"the document has {len(ids)} tokens; the target's {context}-token context holds "
            f"{room} after the template and reserve_tokens={reserve_tokens}; raise n_ctx or set "
            "truncation to 'middle' or 'head'"
        )
    keep = room
    for _ in range(4):  # re-encoding the cut text can differ by a few tokens: shrink and retry
        if policy == "head":
            end = _clean_end(lm, ids, 0, keep)
            fitted, dropped = lm.decode(ids[:end]), (end, len(ids))
        else:
            marker = len(lm.encode(_OMITTED.format(n=len(ids))))
            head = max(0, (keep - marker) // 2)
            tail_start = len(ids) - max(0, keep - marker - head)
            head = _clean_end(lm, ids, 0, head)
            tail_start = _clean_end(lm, ids, 0, tail_start)
            omitted = _OMITTED.format(n=tail_start - head)
            fitted = lm.decode(ids[:head]) + omitted + lm.decode(ids[tail_start:])
            dropped = (head, tail_start)
        kept = len(lm.encode(fitted))
        if kept <= room:
            info = Truncation(
                policy, len(ids), len(ids) - (dropped[1] - dropped[0]), context, dropped
            )
            return fitted, kept, info
        keep -= kept - room + 8
    raise ContextLengthError(f"could not fit the document into {room} tokens")


@dataclass
class RapidPrompt:
    """Everything one RAPID generation needs.

    Attributes:
        prefix_ids: Target prompt up to the question (the document's cacheable prefix).
        suffix_ids: Target prompt from the question on.
        draft_ids: The drafter's prompt (the question over the RAG context).
        chunks: The retrieved chunks, in document order.
        total_chunks: How many chunks the document was split into.
        document_tokens: Tokens of the document the target reads.
        rag_tokens: Tokens of the retrieved context.
        truncation: What was cut to fit the target's context (``None``: nothing).
    """

    prefix_ids: list[int]
    suffix_ids: list[int]
    draft_ids: list[int]
    chunks: list[Chunk]
    total_chunks: int
    document_tokens: int
    rag_tokens: int
    truncation: Truncation | None = None
    seconds: float = 0.0

    @property
    def target_ids(self) -> list[int]:
        """The target's whole prompt."""
        return [*self.prefix_ids, *self.suffix_ids]

    def info(self) -> dict[str, Any]:
        """JSON-ready summary (trace, ``--json``)."""
        return {
            "document_tokens": self.document_tokens,
            "target_prompt_tokens": len(self.prefix_ids) + len(self.suffix_ids),
            "draft_prompt_tokens": len(self.draft_ids),
            "rag_tokens": self.rag_tokens,
            "chunks_total": self.total_chunks,
            "chunks_retrieved": [c.index for c in self.chunks],
            "truncation": asdict(self.truncation) if self.truncation else None,
            "prepare_seconds": round(self.seconds, 4),
        }


def build_rapid_prompt(
    target: Any,
    document: str,
    question: str,
    *,
    chunk_tokens: int = 128,
    budget_tokens: int = 1024,
    ratio: int = 32,
    reserve_tokens: int = 256,
    truncation: TruncationPolicy = "middle",
    instruction: str = DEFAULT_INSTRUCTION,
) -> RapidPrompt:
    """The target's prompt over the (fitted) document and the drafter's over retrieved chunks.

    Args:
        target: The target model (tokenizer, chat template, context length).
        document: The long document.
        question: The question.
        chunk_tokens: Chunk size for retrieval.
        budget_tokens: Lower bound of the drafter's context (RAPID: 4096).
        ratio: The drafter's context is at least ``L / ratio`` tokens (RAPID: 32).
        reserve_tokens: Tokens kept free in the target's context for the question and answer.
        truncation: Policy for a document longer than the target's context.
        instruction: What the prompt asks before the document.

    Returns:
        The prompt ids and what was retrieved and cut.
    """
    started = time.perf_counter()
    text, doc_tokens, cut = fit_document(
        target, document, instruction=instruction, reserve_tokens=reserve_tokens, policy=truncation
    )
    prefix, suffix = split_prompt(target, instruction, text, question)
    chunks = chunk_document(target, text, chunk_tokens)
    want = rag_tokens(doc_tokens, budget_tokens, ratio)
    picked = retrieve_chunks(chunks, question, math.ceil(want / chunk_tokens))
    rag_context = "\n\n".join(c.text.strip() for c in picked)
    draft_prefix, draft_suffix = split_prompt(target, instruction, rag_context, question)
    return RapidPrompt(
        prefix_ids=prefix,
        suffix_ids=suffix,
        draft_ids=[*draft_prefix, *draft_suffix],
        chunks=picked,
        total_chunks=len(chunks),
        document_tokens=doc_tokens,
        rag_tokens=sum(c.tokens for c in picked),
        truncation=cut,
        seconds=time.perf_counter() - started,
    )


# ---------------------------------------------------------------------- the document's KV prefix


def model_identity(lm: Any) -> dict[str, Any]:
    """What a saved prefix state depends on: backend, weights hash, context size."""
    sha = getattr(lm, "model_sha256", None)
    if sha is not None:  # llama.cpp: the GGUF's sha256 (its state format also needs the version)
        return {
            "backend": "llama.cpp",
            "model": str(lm.name),
            "sha256": str(sha),
            "llama_cpp_python": str(getattr(lm, "llama_cpp_version", "")),
            "n_ctx": int(lm.context_length),
        }
    return {
        "backend": "transformers",
        "model": str(lm.name),
        "fingerprint": str(getattr(lm, "fingerprint", "")),
        "dtype": str(getattr(lm, "dtype_name", "")),
    }


@dataclass
class PrefixLookup:
    """A document prefix state and where it came from.

    Attributes:
        state: The backend's prefix state (``LlamaPrefixState`` or ``PrefixCache``).
        hit: Whether it was loaded from disk (a second question on the document).
        seconds: Time to load or compute (and save) it.
        path: Its directory on disk (``None`` when not persisted).
    """

    state: Any
    hit: bool
    seconds: float
    path: Path | None = None
    notes: list[str] = field(default_factory=list)


class DocumentPrefixStore:
    """Target KV prefixes of documents on disk, keyed by the model and the prefix's content hash.

    ``<root>/<key>/`` is a verified artifact directory written by the backend's own prefix-state
    ``save`` (manifest with the model's hash, format and llama.cpp versions, token ids); loading
    re-checks all of it, and a state that no longer loads (another llama-cpp-python, a corrupt
    file) is rebuilt with a logged note, never misused.

    Args:
        root: Directory of the states (e.g. ``$RAGKIT_CACHE/rapid``); ``None`` keeps nothing on
            disk (every call prefills).
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root).expanduser() if root is not None else None

    @staticmethod
    def key(lm: Any, prefix_ids: Sequence[int]) -> str:
        """sha256 of the model identity and the prefix token ids (the document's content)."""
        payload = json.dumps(
            {"model": model_identity(lm), "ids": [int(t) for t in prefix_ids]}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def path_for(self, lm: Any, prefix_ids: Sequence[int]) -> Path | None:
        """Where the prefix's state lives (``None`` without a root)."""
        return None if self.root is None else self.root / self.key(lm, prefix_ids)

    def get(self, lm: Any, prefix_ids: Sequence[int]) -> PrefixLookup:
        """Load the prefix's state, or compute it with ``lm.prefill`` and save it."""
        started = time.perf_counter()
        path = self.path_for(lm, prefix_ids)
        notes: list[str] = []
        if path is not None and path.exists():
            try:
                state = _load_state(lm, path)
                if list(state.token_ids) == list(prefix_ids):
                    return PrefixLookup(state, True, time.perf_counter() - started, path)
                notes.append(f"saved prefix {path} holds other tokens; rebuilt")
            except PrefixCacheError as exc:
                notes.append(f"saved prefix could not be used ({exc}); rebuilt")
            for note in notes:
                logger.warning(note)
        state = lm.prefill(list(prefix_ids))
        if path is not None:
            _save_state(lm, state, path)
        return PrefixLookup(state, False, time.perf_counter() - started, path, notes)


def _load_state(lm: Any, path: Path) -> Any:
    if getattr(lm, "model_sha256", None) is not None:
        from ragkit.models.llamacpp import LlamaPrefixState

        return LlamaPrefixState.load(path, lm)
    from ragkit.models.causal_lm import PrefixCache

    return PrefixCache.load(path, lm)


def _save_state(lm: Any, state: Any, path: Path) -> None:
    if getattr(lm, "model_sha256", None) is not None:
        state.save(path, lm)
    else:
        state.save(path)
