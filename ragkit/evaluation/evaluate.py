"""``ragkit eval`` as one library call: dataset, pipeline and profile in, scored run directory out.

A run directory is keyed on everything that changes its results (the dataset's content, the
pipeline file's content, the profile's settings, ``top_k`` and the store mode; not ``limit``, which
only selects questions), and stores those settings in ``run.json``. ``resume`` refuses a directory
whose settings differ, naming each difference, so results of two readers never mix.

Before anything is written, the output folder is checked (:func:`check_out_dir`): a non-empty
folder that is not a ragkit run (no readable ``run.json``) is never written into, and a ragkit run
made with other settings is replaced only with ``force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.config import ConfigError

if TYPE_CHECKING:
    from ragkit.config import Profile
    from ragkit.evaluation.datasets import Dataset, QAExample
    from ragkit.evaluation.runner import AnswerResult
    from ragkit.models.chat import ReaderTimings
    from ragkit.retrieval.embedders import DocumentEmbedder
    from ragkit.scale.cluster import RayOptions
    from ragkit.stores.store import RagkitStore

__all__ = [
    "MODES",
    "RUN_FILE",
    "EvalSettings",
    "RunSettingsError",
    "check_out_dir",
    "check_resume",
    "dataset_fingerprint",
    "default_out_dir",
    "evaluate",
    "profile_fingerprint",
    "read_run_settings",
]

#: How a dataset's passages are put in stores (see :mod:`ragkit.evaluation.stores`): one store
#: with every passage, one store per question with its passages, or one per question with its
#: gold passages only (``oracle``: what the reader scores when retrieval is perfect, its ceiling).
MODES: tuple[str, ...] = ("pooled", "per-question", "oracle")
#: The settings a run directory was made with, beside results.jsonl and summary.json.
RUN_FILE = "run.json"
_RUN_FORMAT = 1


class RunSettingsError(ConfigError):
    """A run directory cannot take this run: made with other settings, or not a ragkit run."""


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes an evaluation's results, plus readable labels for messages.

    Attributes:
        dataset: Dataset name (label).
        dataset_sha256: Fingerprint of the questions, answers and passages (keyed).
        pipeline: Pipeline file as resolved (label).
        pipeline_sha256: sha256 of the pipeline file's bytes (keyed).
        profile: Profile as given, or "defaults" (label).
        profile_sha256: sha256 of the validated profile's settings (keyed).
        mode: "pooled" or "per-question" (keyed).
        top_k: Passages handed to the reader; None for the pipeline's own (keyed).
    """

    dataset: str
    dataset_sha256: str
    pipeline: str
    pipeline_sha256: str
    profile: str
    profile_sha256: str
    mode: str
    top_k: int | None

    #: The fields a run directory is keyed on; the others only label them.
    KEYED = ("dataset_sha256", "pipeline_sha256", "profile_sha256", "mode", "top_k")

    def key(self) -> str:
        """A short hash of the keyed fields: equal keys mean comparable, resumable runs."""
        keyed = {name: getattr(self, name) for name in self.KEYED}
        return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """Human-readable differences between ``stored`` settings and these, one per keyed field."""

        def show(value: Any) -> str:
            return "the pipeline's own" if value is None else str(value)

        out: list[str] = []
        for name in self.KEYED:
            old, new = stored.get(name), getattr(self, name)
            if old == new:
                continue
            if name == "dataset_sha256":
                out.append(f"dataset {stored.get('dataset')} -> {self.dataset} (content differs)")
            elif name == "pipeline_sha256":
                out.append(
                    f"pipeline {stored.get('pipeline')} -> {self.pipeline} (file content differs)"
                )
            elif name == "profile_sha256":
                out.append(f"profile {stored.get('profile')} -> {self.profile} (settings differ)")
            else:
                out.append(f"{name} {show(old)} -> {show(new)}")
        return out


def dataset_fingerprint(data: Dataset) -> str:
    """sha256 over every question's id, text, answers, gold ids and passage ids (content hashes)."""
    digest = hashlib.sha256()
    for ex in data.examples:
        row = [ex.id, ex.question, ex.answers, ex.gold_passage_ids, [p.id for p in ex.passages]]
        digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    if data.corpus is not None:
        for passage in data.corpus:
            digest.update(passage.id.encode() + b"\n")
    return digest.hexdigest()


def profile_fingerprint(profile: Profile) -> str:
    """sha256 of the validated profile: two files with the same settings give the same hash.

    The embedding model enters as the one the run embeds with, so a profile that names none is
    keyed by the default it gets (a run made before the default changed is not resumed by one
    after it).
    """
    data = profile.model_dump(mode="json")
    data["embedding"]["model"] = eval_embedding_model(profile)
    dumped = json.dumps(data, sort_keys=True)
    return hashlib.sha256(dumped.encode()).hexdigest()


def eval_embedding_model(profile: Profile) -> str:
    """The model an eval store is embedded with: the profile's, else the default for new stores."""
    from ragkit.models.registry import choose_embedding_model

    return choose_embedding_model(profile.embedding.model, profile.embedding.device)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def default_out_dir(settings: EvalSettings, root: Path = Path("runs")) -> Path:
    """``runs/eval-<dataset>-<pipeline>-<profile>-<mode>[-top<k>]-<key>``: one folder per setting."""
    parts = [
        "eval",
        settings.dataset,
        Path(settings.pipeline).stem,
        Path(settings.profile).stem,
        settings.mode,
    ]
    if settings.top_k is not None:
        parts.append(f"top{settings.top_k}")
    parts.append(settings.key())
    return root / "-".join(_slug(p) for p in parts)


def check_resume(out_dir: Path, settings: EvalSettings) -> None:
    """Refuse to resume ``out_dir`` unless it was made with these settings.

    Raises:
        RunSettingsError: The stored settings differ (each difference named), or the folder holds
            results without a ``run.json`` to check them against.
    """
    from ragkit.evaluation.runner import RESULTS_FILE

    run_file = out_dir / RUN_FILE
    fix = "drop --resume to start it afresh, or give another --out"
    if not run_file.exists():
        results = out_dir / RESULTS_FILE
        if results.exists() and results.stat().st_size > 0:
            raise RunSettingsError(
                f"cannot resume {out_dir}: it has results but no {RUN_FILE} (made by an older "
                f"ragkit), so its settings cannot be checked; {fix}"
            )
        return
    try:
        stored = json.loads(run_file.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunSettingsError(
            f"cannot resume {out_dir}: unreadable {run_file} ({exc}); {fix}"
        ) from None
    diffs = settings.differences(stored)
    if diffs:
        raise RunSettingsError(
            f"cannot resume {out_dir}: it was made with other settings: {'; '.join(diffs)}; {fix}"
        )


def read_run_settings(out_dir: Path) -> dict[str, Any] | None:
    """The settings in ``out_dir``'s ``run.json``, or None when it is not a ragkit run's file.

    A ragkit run's ``run.json`` is a JSON object whose ``settings`` hold every keyed field (see
    :class:`EvalSettings`); anything else (missing, unreadable, another tool's file) is not one.
    """
    try:
        stored = json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    settings = stored.get("settings") if isinstance(stored, dict) else None
    if not isinstance(settings, dict):
        return None
    if any(name not in settings for name in EvalSettings.KEYED):
        return None
    return settings


def check_out_dir(
    out_dir: Path, settings: EvalSettings, *, resume: bool = False, force: bool = False
) -> None:
    """Refuse an output folder whose files a run with ``settings`` would overwrite by mistake.

    A missing or empty folder is fine. A non-empty folder must be a ragkit run (a readable
    ``run.json``): its ``results.jsonl`` and ``summary.json`` would be replaced, so a folder of
    anything else is refused, even with ``force``. A ragkit run made with the same settings is
    re-run (or, with ``resume``, continued); one made with other settings is refused unless
    ``force`` (replace it). ``resume`` with other settings is refused (:func:`check_resume`).

    Raises:
        RunSettingsError: The folder is a file, or is not empty and not a ragkit run; a ragkit
            run with other settings, without ``force`` (or with ``resume``); or ``resume`` and
            ``force`` both given.
    """
    if resume and force:
        raise RunSettingsError(
            "--resume keeps a run's results and --force replaces them: give only one of them"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise RunSettingsError(
            f"--out {out_dir} is a file, not a folder; give a new or empty folder"
        )
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    stored = read_run_settings(out_dir)
    if stored is None:
        raise RunSettingsError(
            f"--out {out_dir} is not empty and is not a ragkit eval run (no readable {RUN_FILE}); "
            "ragkit eval would overwrite its files: give a new or empty folder"
        )
    if resume:
        check_resume(out_dir, settings)
        return
    diffs = settings.differences(stored)
    if diffs and not force:
        raise RunSettingsError(
            f"--out {out_dir} holds a ragkit eval run made with other settings: "
            f"{'; '.join(diffs)}; give another --out, or --force to replace that run"
        )


def evaluate(
    dataset: str | Path,
    pipeline: str | Path = "rag",
    profile: str | Path | None = None,
    mode: str = "pooled",
    *,
    top_k: int | None = None,
    limit: int | None = None,
    skip: int = 0,
    out_dir: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    k_values: Iterable[int] = (1, 2, 5, 10),
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """Evaluate a query pipeline on a QA dataset; what ``ragkit eval`` runs.

    Everything is checked before a model loads or a file is written: the mode, the profile, the
    dataset, the pipeline file, and the output folder (:func:`check_out_dir`: empty, or a ragkit
    run with the same settings unless ``force``).

    Args:
        dataset: A short name (see :data:`ragkit.evaluation.datasets.SHORT_NAMES`) or a path.
        pipeline: A pipeline path or shipped name (``rag``, ``retrieve``, ...).
        profile: A profile path or shipped name; None for the built-in defaults.
        mode: ``pooled`` (one store with every passage) or ``per-question``.
        top_k: Passages handed to the reader; None keeps the pipeline's own.
        limit: Only the first ``limit`` questions (not part of the run key).
        skip: Leave out the first ``skip`` questions (not part of the run key): tune on one
            slice, report another.
        out_dir: Output folder; default :func:`default_out_dir` under ``./runs``.
        resume: Skip questions already in the folder's results (same settings only).
        force: Replace a ragkit run made with other settings in ``out_dir`` (never a folder
            that is not a ragkit run).
        progress: Progress bars on stderr.
        k_values: Cut-offs for recall@k.
        ray: Answer the questions on a Ray cluster's workers, each with its own warmed
            pipeline (:class:`~ragkit.scale.cluster.RayOptions`); results are the same.

    Returns:
        The summary (also in ``summary.json``) with ``pipeline``, ``profile``, ``mode``,
        ``top_k``, ``run_key`` and ``out_dir`` added.

    Raises:
        ConfigError: Unknown mode or profile, or a bad profile file.
        ResourceNotFoundError: Unknown pipeline name.
        DatasetError: Missing or malformed dataset, or one with no usable questions.
        PipelineError: Invalid pipeline file.
        RunSettingsError: ``out_dir`` is not empty and not a ragkit run; ``resume`` of a folder
            made with other settings, or (without ``force``) a run with other settings there;
            or ``resume`` with ``force``.
    """
    from ragkit.atomic import write_json_atomic
    from ragkit.config import load_profile, profile_label
    from ragkit.evaluation.datasets import DatasetError, load_dataset
    from ragkit.pipeline import load_pipeline, pipeline_sha256
    from ragkit.resources import resolve_yaml

    if mode not in MODES:
        raise ConfigError(f"mode must be {', '.join(MODES[:-1])} or {MODES[-1]}, not {mode!r}")
    prof = load_profile(profile)
    data = load_dataset(dataset)
    if not data.examples:
        raise DatasetError(f"dataset {dataset} has no usable questions")
    pipe_file = resolve_yaml(pipeline, "pipelines", "pipeline")
    pipe = load_pipeline(  # validates the file
        pipe_file,
        overrides=prof.component_overrides(),
        overrides_from=profile_label(prof),
    )
    settings = EvalSettings(
        dataset=data.name,
        dataset_sha256=dataset_fingerprint(data),
        pipeline=str(pipe_file),
        pipeline_sha256=pipeline_sha256(pipe_file),
        profile=str(profile) if profile is not None else "defaults",
        profile_sha256=profile_fingerprint(prof),
        mode=mode,
        top_k=top_k,
    )
    out = Path(out_dir) if out_dir is not None else default_out_dir(settings)
    check_out_dir(out, settings, resume=resume, force=force)
    if skip < 0:
        raise ConfigError(f"skip must be 0 or more, not {skip}")
    summary = _run(data, pipe, prof, settings, out, limit, resume, progress, k_values, skip, ray)
    summary.update(
        pipeline=str(pipeline),
        profile=settings.profile,
        mode=mode,
        top_k=top_k,
        run_key=settings.key(),
        out_dir=str(out),
    )
    write_json_atomic(out / "summary.json", summary)
    return summary


def _ready_memories(pipe: Any) -> dict[str, dict[str, Any]]:
    """Build (when missing) and load the pooled store's memories before the first question.

    The pooled store is the evaluation's own, so memorizing it is part of the run, as indexing
    it is: building on the first question instead would charge hours to that question's
    seconds. A memory built earlier for the same store is reused (its manifest is checked as in
    ``ragkit query``). Returns each memory component's summary: where it lives, whether it was
    built now, its windows, tokens and units (gists for a gist memory), and the seconds taken
    (the build, or only the load).
    """
    import time

    from ragkit.memory.store import memory_dir

    ready: dict[str, dict[str, Any]] = {}
    for name, comp in pipe.walk():
        if not (hasattr(comp, "memory") and hasattr(comp, "auto_build")):
            continue
        comp.auto_build = True
        store = comp.open_bound_store()
        directory = memory_dir(store, comp.spec().name)
        existed = (directory / "manifest.json").exists()
        started = time.perf_counter()
        memory = comp.memory()
        ready[name] = {
            "directory": str(directory),
            "built": not existed,
            "kind": memory.kind,
            "windows": len(memory.windows),
            "tokens": memory.num_tokens,
            "units": sum(len(w.units) for w in memory.windows),
            "seconds": round(time.perf_counter() - started, 3),
        }
    return ready


def _reader_split(reader: ReaderTimings, *, ran: bool) -> tuple[float | None, float | None]:
    """A question's (seconds_prefill, seconds_decode) from its reader-timings ledger.

    Summed over every ragkit generator reply of the question (Adaptive-Note and other loops call
    the reader several times). No reply and no answer (reader skipped for want of passages, a
    retrieval-only pipeline, an empty store): the reader took no time, 0.0. An answer but no
    reply counted: the reader does not report a split (an OpenAI-compatible server, a scripted
    test reader), so the time is unknown, None, and left out of the summary's means.
    """
    if reader.calls:
        return reader.prefill_s, reader.decode_s
    return (None, None) if ran else (0.0, 0.0)


def _run(
    data: Dataset,
    pipe: Any,
    prof: Profile,
    settings: EvalSettings,
    out: Path,
    limit: int | None,
    resume: bool,
    progress: bool,
    k_values: Iterable[int],
    skip: int = 0,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """Build the store(s), warm the pipeline, record the settings and run every question.

    With ``ray`` the questions go to Ray workers (:mod:`ragkit.scale.evaluation`), each with
    its own warmed pipeline over a private copy of the pooled store; records are still scored
    and written here, one at a time, so ``resume`` works the same.
    """
    import functools

    from ragkit.evaluation.runner import run_eval
    from ragkit.evaluation.stores import pooled_store
    from ragkit.pipeline import close_pipeline
    from ragkit.retrieval.embedders import DocumentEmbedder
    from ragkit.stores.store import release_store

    with contextlib.ExitStack() as stack:
        fan_out = None
        if ray is not None:  # connect before any model loads: an unreachable cluster fails fast
            from ragkit.scale.evaluation import ray_fan_out

            fan_out = stack.enter_context(ray_fan_out(ray))
        model = eval_embedding_model(prof)
        embedder = DocumentEmbedder(model=model, batch_size=prof.embedding.batch_size)
        embedder.warm_up()
        pooled = None
        try:
            if settings.mode == "pooled":
                pooled = pooled_store(data, embedder, model, progress=progress)
            if fan_out is not None:
                pooled_dir = None
                if pooled is not None:  # the workers copy it: they cannot share its lock
                    pooled_dir = str(pooled.directory)
                    release_store(pooled)
                    pooled = None
                _write_run_file(out, settings, {})
                # the workers embed with the driver's model (the run key's), not their own default
                pinned = prof.model_copy(
                    update={"embedding": prof.embedding.model_copy(update={"model": model})}
                )
                opener = functools.partial(worker_answerer, data, pinned, settings, pooled_dir)
                answer_many = fan_out(opener)
            else:
                answer_fn = stack.enter_context(answering(data, pipe, settings, embedder, pooled))
                memories = _ready_memories(pipe) if pooled is not None else {}
                _write_run_file(out, settings, memories)
                answer_many = None
            return run_eval(
                data,
                answer_fn if answer_many is None else _unused_answer_fn,
                out,
                limit=limit,
                resume=resume,
                progress=progress,
                k_values=k_values,
                skip=skip,
                answer_many=answer_many,
            )
        finally:
            close_pipeline(pipe)
            if pooled is not None:
                release_store(pooled)
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises


def _unused_answer_fn(example: Any) -> AnswerResult:
    """Stands in for ``answer_fn`` when Ray workers answer every question."""
    raise AssertionError(f"question {example.id} was to be answered by a Ray worker")


def _write_run_file(out: Path, settings: EvalSettings, memories: dict[str, Any]) -> None:
    """Record the run's settings (and the pooled store's memories) in ``run.json``."""
    from ragkit.atomic import write_json_atomic

    write_json_atomic(
        out / RUN_FILE,
        {
            "format": _RUN_FORMAT,
            "key": settings.key(),
            "settings": asdict(settings),
            **({"memories": memories} if memories else {}),
        },
    )


@contextlib.contextmanager
def answering(
    data: Dataset,
    pipe: Any,
    settings: EvalSettings,
    embedder: DocumentEmbedder,
    pooled: RagkitStore | None,
) -> Iterator[Callable[[QAExample], AnswerResult]]:
    """Warm ``pipe`` over ``pooled`` (or per-question stores); yield the per-question answerer.

    The one answering path of ``ragkit eval``, in this process or on a Ray worker, so both
    score the same answers.
    """
    from ragkit.answering.run import answer_question, strip_citations
    from ragkit.evaluation.runner import AnswerResult
    from ragkit.evaluation.stores import empty_store, question_store
    from ragkit.models.chat import reader_timings
    from ragkit.pipeline import bind_store
    from ragkit.stores.store import release_store

    model = embedder.model
    placeholder = None
    try:
        if pooled is not None:
            bind_store(pipe, pooled)
        else:
            # Warm-up binds an empty store first: a store-bound component left unbound would open
            # its default location (./.ragkit in the working directory) and hold its lock.
            placeholder = empty_store(model)
            bind_store(pipe, placeholder)
        pipe.warm_up()

        def answer_fn(example: Any) -> AnswerResult:
            store = pooled
            if store is None:
                passages = example.passages
                if settings.mode == "oracle":
                    gold = set(example.gold_passage_ids)
                    passages = [p for p in passages if p.id in gold]
                store = question_store(passages, data.name, embedder, model)
                bind_store(pipe, store)
            try:
                with reader_timings() as reader:
                    res = answer_question(pipe, example.question, settings.top_k)
            finally:
                if pooled is None:
                    release_store(store)
            answer = None if res.answer is None else strip_citations(res.answer)
            if res.reader_skipped:
                answer = ""  # no passages, so no answer: it scores 0, it is not left out
            ran = res.answer is not None and not res.reader_skipped
            prefill, decode = _reader_split(reader, ran=ran)
            return AnswerResult(
                answer=answer,
                retrieved_ids=[d.meta.get("passage_id", d.id) for d in res.ranked],
                pool_ids=[d.meta.get("passage_id", d.id) for d in res.candidates],
                seconds=res.seconds,
                seconds_prefill=prefill,
                seconds_decode=decode,
                extra={
                    "raw_answer": res.answer,
                    **({"reader_skipped": True} if res.reader_skipped else {}),
                    **(
                        {"removed_citations": res.removed_citations}
                        if res.removed_citations
                        else {}
                    ),
                    "usage": res.usage,
                    "pool_size": len(res.candidates),
                    "sources": [d.meta.get("title") for d in res.sources],
                    **({"shaping": res.shaping} if res.shaping else {}),
                    **({"trace": res.trace} if res.trace else {}),
                },
            )

        yield answer_fn
    finally:
        if placeholder is not None:
            release_store(placeholder)


@contextlib.contextmanager
def worker_answerer(
    data: Dataset, prof: Profile, settings: EvalSettings, pooled_dir: str | None
) -> Iterator[Callable[[QAExample], AnswerResult]]:
    """:func:`answering` built from scratch on a Ray worker: its own pipeline, reader, store.

    The pooled store is copied to a private directory first (an embedded store is locked to
    one process); the copy is removed on exit. The directory must be readable from the worker
    (one machine, or a shared filesystem); per-question modes need no store at all.
    """
    import shutil
    import tempfile

    from ragkit.config import EmbeddedStore, profile_label
    from ragkit.errors import RagkitError
    from ragkit.models.registry import model_files
    from ragkit.pipeline import close_pipeline, load_pipeline
    from ragkit.retrieval.embedders import DocumentEmbedder
    from ragkit.stores.store import open_store, release_store

    pipe = load_pipeline(
        settings.pipeline,
        overrides=prof.component_overrides(),
        overrides_from=profile_label(prof),
    )
    model = eval_embedding_model(prof)
    embedder = DocumentEmbedder(model=model, batch_size=prof.embedding.batch_size)
    embedder.warm_up()
    private = Path(tempfile.mkdtemp(prefix="ragkit-eval-worker-"))
    pooled = None
    try:
        if pooled_dir is not None:
            if not Path(pooled_dir).is_dir():
                raise RagkitError(
                    f"the pooled store {pooled_dir} is not on this Ray worker's machine; put "
                    "ragkit's cache on a shared filesystem or use --mode per-question"
                )
            copy = private / "store"
            shutil.copytree(pooled_dir, copy, ignore=shutil.ignore_patterns(".lock"))
            pooled = open_store(
                EmbeddedStore(path=str(copy)), embedding_model=model, model_files=model_files
            )
        with answering(data, pipe, settings, embedder, pooled) as answer_fn:
            if pooled is not None:
                _ready_memories(pipe)  # in the copy: a memory built by an earlier run is reused
            yield answer_fn
    finally:
        close_pipeline(pipe)
        if pooled is not None:
            release_store(pooled)
        shutil.rmtree(private, ignore_errors=True)
