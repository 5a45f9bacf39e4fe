"""Pipelines loaded once per process over one shared store, for a server to run many questions.

:func:`ragkit.ask` loads a pipeline, opens the store, warms the models, answers and closes it
all again: right for one question, minutes of waste per request for a server. Here each step
:func:`ragkit.ask` takes is taken once (same functions, same order, same one-line errors):
load with the profile's overrides, open the store, report damage, bind, check API keys, warm up.
Then :meth:`Engine.submit` runs :func:`~ragkit.answering.run.answer_question` per question.

Concurrency, decided per pipeline:

* a pipeline with a reader (a generator: one model context, not thread-safe) gets one worker
  thread, so its requests queue in arrival order (first come, first served);
* a retrieval-only pipeline runs on a shared pool, concurrently; its query embedder is behind a
  lock of its own (a fast tokenizer is not safe to call from two threads), the store searches
  are not;
* indexing (``POST /index``) takes a write lock that excludes every query, so a query sees a
  file's old chunks or its new ones, never half of each;
* a caller may pass a :class:`threading.Event`: once set, the next streamed token raises
  :class:`Cancelled` inside the generator, which ends the generation (a client that went away).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.errors import InvalidInputError, RagkitError
from ragkit.serve.settings import PIPELINE_NAME, ServeSettings

if TYPE_CHECKING:
    from haystack import Pipeline
    from haystack.dataclasses import StreamingChunk

    from ragkit.answering.run import QueryResult
    from ragkit.config import Profile
    from ragkit.stores.store import RagkitStore

__all__ = [
    "Cancelled",
    "Engine",
    "LoadedPipeline",
    "too_long",
]

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a generation whose client went away; ends it at the next token."""


def too_long(message: str) -> InvalidInputError:
    """Invalid input that is over a size cap: the server answers it with HTTP 413, not 422.

    An attribute rather than a class of its own: ragkit exports every error class it raises,
    and callers catch this one as the :class:`~ragkit.errors.InvalidInputError` it is.
    """
    exc = InvalidInputError(message)
    exc.http_status = 413  # type: ignore[attr-defined]
    return exc


class _RWLock:
    """Many readers or one writer; a waiting writer stops new readers (indexing is not starved)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _locked_run(comp: Any, lock: threading.Lock) -> None:
    """Serialize one component's ``run`` on its instance (Haystack calls ``instance.run``)."""
    original = comp.run

    def run(**kwargs: Any) -> Any:
        with lock:
            return original(**kwargs)

    comp.run = run


def _has_reader(pipe: Pipeline) -> bool:
    """Whether a component generates text (a ``replies`` output): its model is one context."""
    return any("replies" in comp.__haystack_output__._sockets_dict for _, comp in pipe.walk())


def _models(pipe: Pipeline) -> list[dict[str, Any]]:
    """The models the pipeline's components hold: what ``GET /status`` lists."""
    out = []
    for name, comp in pipe.walk():
        model = getattr(comp, "model", None) or getattr(comp, "tokenizer", None)
        if isinstance(model, str) and model:
            entry = {"component": name, "type": type(comp).__name__, "model": model}
            device = getattr(comp, "device", None)
            if isinstance(device, str):
                entry["device"] = device
            out.append(entry)
    return out


@dataclass
class _Counters:
    """Per-pipeline request counts for ``GET /status``."""

    requests: int = 0
    errors: int = 0
    cancelled: int = 0
    running: int = 0
    queued: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "errors": self.errors,
                "cancelled": self.cancelled,
                "running": self.running,
                "queued": self.queued,
                "seconds": round(self.seconds, 3),
            }


class LoadedPipeline:
    """One query pipeline, loaded, bound to the open store and warmed up once."""

    def __init__(
        self, name: str, source: Path, pipe: Pipeline, no_passages: str, threads: int
    ) -> None:
        self.name = name
        self.source = source
        self.pipe = pipe
        self.no_passages = no_passages
        self.reader = _has_reader(pipe)
        self.models = _models(pipe)
        self.counters = _Counters()
        # readers: one thread, so requests queue in order; retrieval: a pool of its own
        self.executor = ThreadPoolExecutor(
            max_workers=1 if self.reader else threads, thread_name_prefix=f"ragkit-{name}"
        )
        if not self.reader:
            embed_lock = threading.Lock()
            for _, comp in pipe.walk():
                if "embedding" in comp.__haystack_output__._sockets_dict:
                    _locked_run(comp, embed_lock)

    @classmethod
    def load(
        cls, name: str, source: Path, profile: Profile, store: RagkitStore, threads: int = 8
    ) -> LoadedPipeline:
        """Load ``source`` with the profile's overrides, bind ``store`` and warm the models.

        The steps and checks are :func:`ragkit.ask`'s, taken once.

        Raises:
            PipelineError, ConfigError: Invalid pipeline or profile overrides.
            InvalidInputError: The pipeline needs a ``document`` (not servable over a store), or
                an API key variable is unset.
        """
        from ragkit.answering.ask import require_api_keys
        from ragkit.answering.run import no_passages_mode
        from ragkit.config import profile_label
        from ragkit.pipeline import DOCUMENT_INPUT, bind_store, close_pipeline, load_pipeline

        pipe = load_pipeline(
            source,
            overrides=profile.component_overrides(),
            overrides_from=profile_label(profile),
        )
        try:
            if any(DOCUMENT_INPUT in sockets for sockets in pipe.inputs().values()):
                raise InvalidInputError(
                    f"pipeline {name!r} answers from one long document, not from the store; "
                    "serve a store pipeline (rag, retrieve, ...)"
                )
            no_passages = no_passages_mode(pipe, None)
            bind_store(pipe, store)
            require_api_keys(pipe)
            pipe.warm_up()
        except BaseException:
            close_pipeline(pipe)
            raise
        return cls(name, source, pipe, no_passages, threads)

    def answer(
        self,
        question: str,
        top_k: int | None = None,
        on_chunk: Callable[[StreamingChunk], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> QueryResult:
        """Answer on the calling thread (callers go through :meth:`Engine.submit`)."""
        from ragkit.answering.run import answer_question

        callback = on_chunk
        if cancel is not None:

            def callback(chunk: StreamingChunk) -> None:
                if cancel.is_set():
                    raise Cancelled(f"pipeline {self.name!r}: the client went away")
                if on_chunk is not None:
                    on_chunk(chunk)

        result = answer_question(self.pipe, question, top_k, callback, None, self.no_passages)
        for info in result.trace.values():  # e.g. a truncated document
            for line in (info.get("warnings") or []) if isinstance(info, dict) else []:
                result.warnings.append(str(line))
        result.warnings.extend(result.notes())
        return result

    def close(self) -> None:
        """Stop the worker threads and release the models."""
        from ragkit.pipeline import close_pipeline

        self.executor.shutdown(wait=True, cancel_futures=True)
        close_pipeline(self.pipe)


def _is_cancelled(exc: BaseException) -> bool:
    """Whether a failure is a :class:`Cancelled` (Haystack wraps a component's error)."""
    from ragkit.failures import root_cause

    return isinstance(root_cause(exc), Cancelled)


def _query_pipelines() -> list[tuple[str, Path]]:
    """Every shipped pipeline (the default of ``--pipelines``), by name."""
    from ragkit.resources import shipped_files

    return [(p.stem, p) for p in shipped_files("pipelines")]


class Engine:
    """The served pipelines over one store, opened once per process; thread-safe.

    Use :meth:`open`; pair with :meth:`close`.
    """

    def __init__(
        self,
        settings: ServeSettings,
        profile: Profile,
        store: RagkitStore,
        pipelines: dict[str, LoadedPipeline],
        skipped: dict[str, str],
        store_warnings: list[str],
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.store = store
        self.pipelines = pipelines
        self.skipped = skipped
        self.store_warnings = store_warnings
        self.rw = _RWLock()
        self.started = time.time()
        self._index_lock = threading.Lock()
        self.indexed_runs = 0

    @classmethod
    def open(
        cls, settings: ServeSettings, on_progress: Callable[[str], None] | None = None
    ) -> Engine:
        """Open the store and load every pipeline to serve, once.

        With the default pipeline list a shipped pipeline that cannot run over this store
        (it needs a document, a memory not built, a key not set) is skipped and reported in
        ``skipped``; a pipeline named in ``settings.pipelines`` that fails is an error.

        Raises:
            RagkitError: The store cannot be opened, a named pipeline fails to load, or none
                loads at all; the message is the CLI's line.
        """
        from ragkit.config import resolve_profile
        from ragkit.failures import describe_failure
        from ragkit.indexing.integrity import repair_command, store_problems
        from ragkit.models.registry import model_files
        from ragkit.resources import find_pipeline_file
        from ragkit.stores.locate import explicit_embedding_model, open_store_at
        from ragkit.stores.store import release_store

        say = on_progress or (lambda line: None)
        settings.check()
        # as ragkit.ask does around each run, for the server's life (a per-call level change
        # would race between threads): a failed or cancelled run's snapshot cannot hold the
        # streaming callback, a warning that says nothing about the failure
        logging.getLogger("haystack.utils.base_serialization").setLevel(logging.ERROR)
        profile = resolve_profile(settings.profile)
        writable = settings.allow_index
        store = open_store_at(
            settings.store,
            profile,
            must_exist=not writable,
            embedding_model=explicit_embedding_model(profile),
            model_files=model_files,
            read_only=not writable,
        )
        loaded: dict[str, LoadedPipeline] = {}
        skipped: dict[str, str] = {}
        try:
            warnings = [
                f"store is damaged: {line}; run `{repair_command(store)}`"
                for line in store_problems(store, full=False)
            ]
            if settings.pipelines is None:
                wanted = [(n, p) for n, p in _query_pipelines() if PIPELINE_NAME.match(n)]
                explicit = False
            else:
                names = settings.served_names() or []
                wanted = [
                    (n, find_pipeline_file(p, "pipelines", "--pipelines"))
                    for n, p in zip(names, settings.pipelines, strict=True)
                ]
                explicit = True
            for name, source in wanted:
                started = time.perf_counter()
                try:
                    loaded[name] = LoadedPipeline.load(
                        name, source, profile, store, settings.retrieval_threads
                    )
                except Exception as exc:  # noqa: BLE001 - the default list skips what fails
                    if explicit:
                        raise
                    known = describe_failure(exc)
                    why = known[0] if known else f"{type(exc).__name__}: {exc}"
                    skipped[name] = why
                    say(f"skipped pipeline {name}: {why}")
                    continue
                say(f"loaded pipeline {name} in {time.perf_counter() - started:.1f} s")
            if not loaded:
                raise RagkitError(
                    "no pipeline could be loaded over this store: "
                    + "; ".join(f"{n}: {why}" for n, why in skipped.items())
                )
        except BaseException:
            for pipe in loaded.values():
                pipe.close()
            release_store(store)
            raise
        return cls(settings, profile, store, loaded, skipped, warnings)

    # ------------------------------------------------------------------ questions
    def pipeline(self, name: str) -> LoadedPipeline:
        """The served pipeline called ``name`` (a dictionary lookup: names are never paths).

        Raises:
            KeyError: No pipeline is served under that name.
        """
        return self.pipelines[name]

    def check_question(self, question: Any, top_k: Any = None) -> tuple[str, int | None]:
        """The question and ``top_k`` as the pipelines take them, within the server's caps.

        Raises:
            InvalidInputError: Not a string, blank, longer than ``max_question_chars``
                (marked for HTTP 413, see :func:`too_long`), or ``top_k`` out of range.
        """
        caps = self.settings
        if not isinstance(question, str):
            raise InvalidInputError("the question must be a string")
        if len(question) > caps.max_question_chars:
            raise too_long(
                f"the question is {len(question):,} characters; this server takes at most "
                f"{caps.max_question_chars:,}"
            )
        if not question.strip():
            raise InvalidInputError("the question is empty")
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int):
                raise InvalidInputError(f"top_k must be a whole number, not {top_k!r}")
            if not 1 <= top_k <= caps.max_top_k:
                raise InvalidInputError(
                    f"top_k must be between 1 and {caps.max_top_k} on this server, not {top_k}"
                )
        return question, top_k

    def submit(
        self,
        name: str,
        question: str,
        top_k: int | None = None,
        on_chunk: Callable[[StreamingChunk], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Future[QueryResult]:
        """Queue a question on its pipeline (in order behind a reader; concurrently otherwise).

        Args:
            name: A served pipeline's name.
            question: Checked with :meth:`check_question` first.
            top_k: Passages to hand on; None: the pipeline's.
            on_chunk: Receives the answer's pieces as they are generated (worker thread).
            cancel: Set it to stop the run: a queued run does not start, a running generation
                stops at its next token (the future then raises :class:`Cancelled`).

        Returns:
            The future :class:`~ragkit.answering.run.QueryResult`.

        Raises:
            KeyError: No pipeline ``name``.
        """
        pipe = self.pipeline(name)
        counters = pipe.counters
        with counters.lock:
            counters.requests += 1
            counters.queued += 1

        def job() -> QueryResult:
            with counters.lock:
                counters.queued -= 1
                counters.running += 1
            started = time.perf_counter()
            try:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"pipeline {name!r}: the client went away before its turn")
                with self.rw.read():
                    return pipe.answer(question, top_k, on_chunk, cancel)
            except BaseException as exc:
                with counters.lock:
                    if _is_cancelled(exc):
                        counters.cancelled += 1
                    else:
                        counters.errors += 1
                raise
            finally:
                with counters.lock:
                    counters.running -= 1
                    counters.seconds += time.perf_counter() - started

        future = pipe.executor.submit(job)

        def dropped(done: Future[QueryResult]) -> None:  # cancelled while still queued
            if done.cancelled():
                with counters.lock:
                    counters.queued -= 1
                    counters.cancelled += 1

        future.add_done_callback(dropped)
        return future

    # ------------------------------------------------------------------ indexing
    def index(self, paths: list[str], uploads: dict[str, str] | None = None) -> dict[str, Any]:
        """Index server-side paths under the index root, and uploaded text files, into the store.

        Runs under the write lock: no query runs meanwhile, so none sees half a file.

        Args:
            paths: Files or folders, relative to the index root or absolute inside it.
            uploads: File name -> text; written into ``<index root>/uploads/`` first.

        Returns:
            What ``ragkit index --json`` prints.

        Raises:
            InvalidInputError: Indexing is off, a path leaves the root, or a bad upload name.
        """
        from ragkit.atomic import write_bytes_atomic
        from ragkit.indexing.run import index_files

        if not self.settings.allow_index:
            raise InvalidInputError("indexing is off on this server; start it with --allow-index")
        root = self.settings.index_root_path()
        targets = [self._inside_root(root, p) for p in paths]
        uploads = uploads or {}
        folder = root / "uploads"
        for filename in uploads:
            if Path(filename).name != filename or filename.startswith(".") or not filename:
                raise InvalidInputError(
                    f"upload name {filename!r} must be a plain file name (no folders, no dot first)"
                )
        if not targets and not uploads:
            raise InvalidInputError("give 'paths' (under the index root) or 'files' to index")
        with self._index_lock, self.rw.write():
            for filename, text in uploads.items():
                folder.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(folder / filename, text.encode("utf-8"))
                targets.append(folder / filename)
            result = index_files(
                targets, store=self._store_location(), profile=self.profile, progress=False
            )
            self.indexed_runs += 1
        return result.as_dict()

    def _store_location(self) -> str | None:
        """The open store's location as ``--store`` gives it (index_files then shares it)."""
        if self.store.directory is not None and self.store.config.kind == "embedded":
            return str(self.store.directory)
        return self.settings.store

    @staticmethod
    def _inside_root(root: Path, given: str) -> Path:
        """``given`` resolved (links followed) if it lies inside ``root``; else an error."""
        if not isinstance(given, str) or not given or "\x00" in given:
            raise InvalidInputError("each path must be a non-empty string")
        path = Path(given).expanduser()
        resolved = (path if path.is_absolute() else root / path).resolve()
        if resolved != root and root not in resolved.parents:
            raise InvalidInputError(
                f"path {given!r} is outside the index root; this server indexes only under "
                "the folder given by --index-root"
            )
        if not resolved.exists():
            raise InvalidInputError(f"path {given!r} does not exist under the index root")
        return resolved

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """Store stats, loaded models and request counts: ``GET /status``."""
        with self.rw.read():
            store = self.store.stats()
        return {
            "status": "ok",
            "store": store,
            "store_warnings": self.store_warnings,
            "pipelines": {
                name: {
                    "kind": "answering" if p.reader else "retrieval",
                    "concurrency": "queued in order (one reader)"
                    if p.reader
                    else f"concurrent (up to {self.settings.retrieval_threads})",
                    "models": p.models,
                    **p.counters.as_dict(),
                }
                for name, p in self.pipelines.items()
            },
            "skipped": self.skipped,
            "indexing": {
                "allowed": self.settings.allow_index,
                "runs": self.indexed_runs,
            },
            "process": {
                "pid": os.getpid(),
                "rss_mb": round(rss_bytes() / 2**20, 1),
                "uptime_seconds": round(time.time() - self.started, 1),
            },
        }

    def close(self) -> None:
        """Release every pipeline and the store."""
        from ragkit.stores.store import release_store

        for pipe in self.pipelines.values():
            pipe.close()
        release_store(self.store)


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), from ``/proc``; 0 where unknown."""
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if pid is None:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    return 0
