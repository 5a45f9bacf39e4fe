"""Killing `ragkit index` mid-run and re-running leaves no duplicate and no missing chunk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_run import ragkit

from ragkit.config import EmbeddedStore
from ragkit.indexing.manifest import Manifest
from ragkit.stores.store import open_store, release_store

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
    "pi",
    "rho",
    "sigma",
]


def make_corpus(root: Path, n: int) -> None:
    root.mkdir()
    for i in range(n):
        sentences = [
            f"Document {i} sentence {j} mentions {WORDS[(i + j) % len(WORDS)]} and token{i}x{j}."
            for j in range(40)
        ]
        (root / f"doc{i:03d}.txt").write_text(" ".join(sentences))


def test_kill_mid_index_then_rerun(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    make_corpus(corpus, 60)
    store = tmp_path / "store"
    profile = tmp_path / "small-batches.yaml"
    profile.write_text("indexing:\n  batch_bytes: 8000\n")  # many small durable batches
    args = ["index", str(corpus), "--store", str(store), "--profile", str(profile), "-q"]
    cmd = [sys.executable, "-m", "ragkit.cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = store / "manifest.json"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists():
            try:
                files = json.loads(manifest.read_text())["files"]
                done = sum(1 for e in files.values() if e["status"] == "done")
            except (ValueError, KeyError):
                done = 0
            if done >= 5:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "indexing finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = Manifest.load(manifest)
    assert 0 < sum(e.status == "done" for e in partial.files.values()) < 60

    # the re-run in this process: a second interpreter would only load torch and the model again
    code, _, err = ragkit(*args)
    assert code == 0, err

    st = open_store(EmbeddedStore(path=str(store)))
    try:
        docs = st.qdrant.filter_documents()
        ids = [d.id for d in docs]
        assert len(ids) == len(set(ids))
        per_source: dict[str, set[int]] = {}
        for d in docs:
            per_source.setdefault(d.meta["source"], set()).add(d.meta["chunk_index"])
        man = Manifest.load(manifest)
        assert len(per_source) == 60
        for src, entry in man.files.items():
            assert entry.status == "done"
            assert per_source[src] == set(range(entry.chunks)), src
        assert st.stats()["bm25"]["docs"] == len(ids)
        hits = st.bm25_search("token42x7", top_k=3)
        assert hits and hits[0].meta["source"].endswith("doc042.txt")
    finally:
        release_store(st)
