"""Ask one question in one call: what ``ragkit query`` does, for scripts and notebooks too.

:func:`ask` loads the query pipeline with the profile's overrides, checks the document input,
opens the store read-only, reports damage, binds and warms the pipeline (naming a missing API
key first), runs :func:`~ragkit.answering.run.answer_question`, and closes everything, also on
failure. Problems are :class:`~ragkit.errors.RagkitError` subclasses carrying the CLI's message
and exit status; warnings come back as data (``QueryResult.warnings``) and, as they happen,
through ``on_warning`` (the CLI prints them on stderr before the answer streams).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ragkit.config import Profile, profile_label, resolve_profile
from ragkit.errors import InvalidInputError

if TYPE_CHECKING:
    from haystack import Pipeline
    from haystack.dataclasses import StreamingChunk

    from ragkit.answering.run import QueryResult

__all__ = ["ask", "read_document", "require_api_keys"]


def read_document(path: str | os.PathLike[str]) -> str:
    """The text of a long document to answer from (``ragkit query --document FILE``).

    Raises:
        InvalidInputError: The path is missing or not a file, not UTF-8 text, or empty.
    """
    document = Path(path)
    if not document.is_file():
        what = "is not a file" if document.exists() else "does not exist"
        raise InvalidInputError(f"--document {document} {what}; give the path of a text file")
    try:
        text = document.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"--document {document} cannot be read as UTF-8 text ({exc})"
        ) from None
    if not text.strip():
        raise InvalidInputError(f"--document {document} is empty")
    return text


def _document_text(document: str | os.PathLike[str] | None) -> str | None:
    """A document given as text is used as is; a path is read with :func:`read_document`."""
    if document is None:
        return None
    if isinstance(document, str):
        if not document.strip():
            raise InvalidInputError("the document is empty")
        return document
    return read_document(document)


def _check_document_input(pipe: Pipeline, name: str, has_document: bool) -> None:
    """A pipeline with a ``document`` input needs a document, and only such a one takes it."""
    from ragkit.pipeline import DOCUMENT_INPUT

    wants = any(DOCUMENT_INPUT in sockets for sockets in pipe.inputs().values())
    if wants and not has_document:
        raise InvalidInputError(f"pipeline {name!r} answers from a document: give --document FILE")
    if has_document and not wants:
        raise InvalidInputError(
            f"pipeline {name!r} has no 'document' input; --document needs a long-document "
            "pipeline such as --pipeline rapid"
        )


def require_api_keys(pipe: Pipeline) -> None:
    """OpenAI clients refuse to start without a key: name the unset variable before warm-up.

    Raises:
        InvalidInputError: A component's ``api_key`` names environment variables none of which
            is set.
    """
    from haystack.utils import Secret
    from haystack.utils.auth import SecretType

    for name, comp in pipe.walk():
        key = getattr(comp, "api_key", None)
        if "openai" not in type(comp).__module__ or not isinstance(key, Secret):
            continue
        if key.type != SecretType.ENV_VAR:  # a token is set by construction
            continue
        env_vars = key.to_dict().get("env_vars") or []
        if env_vars and not any(os.environ.get(v) for v in env_vars):
            raise InvalidInputError(
                f"component '{name}' needs an API key: set the environment variable "
                f"{' or '.join(env_vars)} (a local server accepts any value, e.g. "
                f"`export {env_vars[0]}=none`)"
            )


@contextlib.contextmanager
def _quiet_failure_snapshot() -> Iterator[None]:
    """Mute Haystack's warnings that a failed run's snapshot cannot hold the streaming callback.

    They say nothing about the failure, which is reported as one line.
    """
    logger = logging.getLogger("haystack.utils.base_serialization")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def ask(
    question: str,
    pipeline: str | os.PathLike[str] = "rag",
    *,
    store: str | None = None,
    profile: str | Path | Profile | None = None,
    top_k: int | None = None,
    document: str | os.PathLike[str] | None = None,
    on_chunk: Callable[[StreamingChunk], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    no_passages: str | None = None,
) -> QueryResult:
    """Answer ``question`` with a query pipeline over a store (or over one long document).

    Args:
        question: The question; must not be blank.
        pipeline: Query pipeline: a name in ``pipelines/`` (``rag``, ``retrieve``, ``rapid``...)
            or a YAML path. The profile's component overrides (e.g. its generator) apply.
        store: Store directory or Qdrant URL, opened read-only; None: the profile's store.
            Ignored with ``document``: no store is read then.
        profile: A :class:`~ragkit.config.Profile`, a profile name or YAML path; None: the
            default profile (``$RAGKIT_PROFILE``, else ``default``).
        top_k: How many passages retrieval hands on (at least 1); None: the pipeline's.
        document: For pipelines with a ``document`` input (e.g. ``rapid``): the document's
            text as a ``str``, or a path (``pathlib.Path``) to a UTF-8 file.
        on_chunk: Called with each streamed piece of the answer as it is generated.
        on_warning: Called with each warning line as it arises (store damage before the
            pipeline runs; after it, e.g. a truncated document, citations of passages the
            reader was not given, fewer passages than ``top_k``); also kept in ``warnings``.
        no_passages: When the reader would be given no passages: ``"skip"`` (do not ask it)
            or ``"read"`` (ask it with the pipeline's prompt); None: the pipeline's
            ``metadata.no_passages``, else ``"skip"``.

    Returns:
        The :class:`~ragkit.answering.run.QueryResult`: ``answer`` (None for retrieval-only
        pipelines, or when the reader was not asked: ``reader_skipped``), ``sources``,
        ``ranked``, ``empty_store``, ``removed_citations``, ``top_k_shortfall`` and
        ``warnings``.

    Raises:
        InvalidInputError: Blank question, ``top_k`` below 1, a document missing or not
            wanted, an unset API key, or ``no_passages`` not skip or read.
        ConfigError: Unknown or invalid profile.
        PipelineNotFoundError: Unknown pipeline.
        PipelineError: Invalid pipeline YAML.
        StoreError: No ragkit store at ``store``.
        StoreInUseError: Another process holds the store for writing.
    """
    from ragkit.answering.run import answer_question, no_passages_mode
    from ragkit.indexing.integrity import repair_command, store_problems
    from ragkit.models.registry import model_files
    from ragkit.pipeline import bind_store, close_pipeline, load_pipeline
    from ragkit.resources import find_pipeline_file
    from ragkit.stores.locate import explicit_embedding_model, open_store_at
    from ragkit.stores.store import release_store

    if not question.strip():
        raise InvalidInputError("the question is empty")
    if top_k is not None and top_k < 1:
        raise InvalidInputError(f"top_k must be at least 1, not {top_k}")
    prof = resolve_profile(profile)
    text = _document_text(document)
    extra = {"document": text} if text is not None else None
    pipe = load_pipeline(
        find_pipeline_file(pipeline, "pipelines", "--pipeline"),
        overrides=prof.component_overrides(),
        overrides_from=profile_label(prof),
    )
    no_passages = no_passages_mode(pipe, no_passages)  # checked before models load
    warnings: list[str] = []

    def warn(line: str) -> None:
        warnings.append(line)
        if on_warning is not None:
            on_warning(line)

    st = None
    try:
        _check_document_input(pipe, str(pipeline), text is not None)
        if text is None:
            st = open_store_at(
                store,
                prof,
                must_exist=True,
                embedding_model=explicit_embedding_model(prof),
                model_files=model_files,
                read_only=True,
            )
            for line in store_problems(st, full=False):
                warn(f"store is damaged: {line}; run `{repair_command(st)}`")
            bind_store(pipe, st)
            require_api_keys(pipe)
        pipe.warm_up()
        with _quiet_failure_snapshot():
            result = answer_question(pipe, question, top_k, on_chunk, extra, no_passages)
    finally:
        close_pipeline(pipe)
        if st is not None:
            release_store(st)
    for info in result.trace.values():  # e.g. RAPID's truncation of a long document
        for line in (info.get("warnings") or []) if isinstance(info, dict) else []:
            warn(str(line))
    for line in result.notes():
        warn(line)
    result.warnings = warnings
    return result
