"""Measure ``ragkit index`` throughput: one process, then ``--ray`` with 1 and 2 workers.

The numbers behind docs/scaling.md. Start a cluster first (``ray start --head --num-cpus=2``),
then::

    python docs/scaling_measure.py 127.0.0.1:6379 --files 300 --out /tmp/ragkit-scaling

It writes a generated corpus (ten 100-word chunks per file), indexes it into a fresh store per run
(``ragkit index`` as a subprocess: the times include start-up and model loading), measures the
single writer alone (writing the embedded chunks of the first run into a fresh store, batch by
batch as the indexer does), and prints one JSON line per run and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
]


def make_corpus(root: Path, files: int, sentences: int = 70) -> None:
    """``files`` text files of ``sentences`` ten-word sentences each."""
    root.mkdir(parents=True)
    for i in range(files):
        text = " ".join(
            f"Record {i} line {j} says {WORDS[(i + j) % len(WORDS)]} meets "
            f"{WORDS[(i * j) % len(WORDS)]} near token{i}x{j} today."
            for j in range(sentences)
        )
        (root / f"doc{i:04d}.txt").write_text(text)


def index(
    corpus: Path, store: Path, profile: Path, *extra: str, env: dict[str, str] | None = None
) -> dict:
    """One ``ragkit index --json`` run in a fresh process: its report, wall time, load average."""
    cmd = [sys.executable, "-m", "ragkit.cli", "index", str(corpus), "--store", str(store)]
    start = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--profile", str(profile), "--json", *extra],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    report = json.loads(proc.stdout)
    load = round(os.getloadavg()[0], 1)  # the machine's 1-minute load when the run ended
    return {
        "wall_s": round(wall, 2),
        "index_s": round(report["seconds"], 2),
        "load": load,
        **report,
    }


def writer_only(source: Path, target: Path, batch_files: int) -> dict:
    """Chunks per second of the one writer: replace-by-source write + commit per batch."""
    from ragkit.config import EmbeddedStore
    from ragkit.stores.store import open_store, release_store

    src = open_store(EmbeddedStore(path=str(source)), read_only=True)
    docs = src.qdrant.filter_documents()
    release_store(src)
    by_source: dict[str, list] = {}
    for d in docs:
        by_source.setdefault(d.meta["source"], []).append(d)
    sources = sorted(by_source)
    dst = open_store(EmbeddedStore(path=str(target)))
    start = time.perf_counter()
    for i in range(0, len(sources), batch_files):
        batch = sources[i : i + batch_files]
        for s in batch:
            dst.delete_source(s)
        dst.write([d for s in batch for d in by_source[s]])
        dst.commit()
    seconds = time.perf_counter() - start
    release_store(dst)
    return {"chunks": len(docs), "seconds": round(seconds, 2), "rate": round(len(docs) / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="Ray cluster address (HOST:PORT)")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ragkit-scaling"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    corpus = args.out / "corpus"
    make_corpus(corpus, args.files)
    profile = args.out / "profile.yaml"
    profile.write_text("split:\n  split_by: word\n  split_length: 100\n  split_overlap: 10\n")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = {"single process": index(corpus, args.out / "single", profile)}
    # a Ray worker runs one OpenMP thread (Ray sets OMP_NUM_THREADS=1 for a fractional CPU):
    # the same process on one thread is the per-core baseline
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows["single process, 1 thread"] = index(corpus, args.out / "single1", profile, env=one_thread)
    for workers in (1, 2):
        rows[f"ray, {workers} worker(s)"] = index(
            corpus,
            args.out / f"ray{workers}",
            profile,
            "--ray",
            args.address,
            "--ray-workers",
            str(workers),
        )
    writer = writer_only(args.out / "single", args.out / "writer", 16)
    for name, row in rows.items():
        keys = ("wall_s", "index_s", "chunks_written", "load")
        print(json.dumps({"run": name, **{k: row[k] for k in keys}}))
    print(json.dumps({"run": "writer only", **writer}))
    print("\n| run | chunks | wall s | index s | chunks/s (index) | load |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        rate = row["chunks_written"] / row["index_s"]
        print(
            f"| {name} | {row['chunks_written']} | {row['wall_s']} | {row['index_s']} "
            f"| {rate:.0f} | {row['load']} |"
        )
    print(
        f"| writer only (16 files/commit) | {writer['chunks']} | | {writer['seconds']} "
        f"| {writer['rate']} | |"
    )


if __name__ == "__main__":
    main()
