"""Issue 31, item 1: the fault tests of Qdrant local mode, run on Qdrant Edge too.

Each guarantee below runs on both engines with the real CLI (or a real killed process), so
the two stay comparable:

* a SIGKILL mid-index or mid-commit loses nothing written before it, and a re-run completes;
* a truncated or corrupt file of the vector engine gets one diagnosis in every command,
  read-only commands change nothing, and the remedy named (``repair`` or delete + re-index)
  restores the store;
* a second process gets one "in use" line while the first holds the store;
* ``repair`` rebuilds a damaged BM25 index from the vectors (no re-embedding) and re-indexes
  from the source files what the vector engine lost.

On Edge the corrupt-file guarantee rests on ragkit's seal (:mod:`ragkit.stores.edge`): the
engine itself opens a segment whose vector matrix is truncated and answers with other vectors.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_run import ragkit
from haystack import Document

from ragkit.config import EmbeddedStore
from ragkit.indexing.manifest import Manifest
from ragkit.stores.edge import seal_path
from ragkit.stores.store import StoreError, migrate_to_edge, open_store, release_store

pytest.importorskip("qdrant_edge")

SAMPLE = Path(__file__).resolve().parents[2] / "ragkit" / "data" / "sample"
ENGINES = ["local", "edge"]
WINDS = "Which planet has the strongest winds?"
DIM = 384


def engine_profile(root: Path, engine: str, extra: str = "") -> Path:
    """A profile whose new stores use ``engine`` (and ``extra`` YAML appended)."""
    path = root / f"{engine}-profile.yaml"
    path.write_text(f"store:\n  kind: embedded\n  engine: {engine}\n{extra}")
    return path


def tree(directory: Path) -> dict[str, bytes]:
    """Every file of a store but the process locks (their content is the holder's pid)."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in directory.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def passages(store: Path, question: str = WINDS) -> list[tuple[str, str]]:
    code, out, err = ragkit(
        "query", question, "--store", str(store), "--pipeline", "retrieve", "--top-k", "3",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    return [(p["source"], p["content"]) for p in json.loads(out)["passages"]]


def stats(store: Path) -> dict:
    code, out, err = ragkit("stats", "--store", str(store), "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module", params=ENGINES)
def indexed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(engine, corpus, store, good stats, good passages): the sample corpus indexed once."""
    engine = request.param
    root = tmp_path_factory.mktemp(f"faults-{engine}")
    corpus = root / "corpus"
    shutil.copytree(SAMPLE, corpus)
    store = root / "store"
    code, _, err = ragkit(
        "index", str(corpus), "--store", str(store), "-q", "--profile",
        str(engine_profile(root, engine)),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((store / "store.json").read_text())["engine"] == engine
    return engine, corpus, store, stats(store), passages(store)


def copy_of(indexed, tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(indexed[2], store)
    if seal_path(indexed[2] / "edge").exists():
        shutil.copy2(seal_path(indexed[2] / "edge"), seal_path(store / "edge"))
    return store


def assert_restored(indexed, store: Path) -> None:
    """Same chunks, integrity ok, the same passages, and a re-index finds nothing to do."""
    _, corpus, _, good, hits = indexed
    fixed = stats(store)
    assert fixed["integrity"] == "ok" and fixed["chunks"] == good["chunks"]
    assert fixed["bm25"]["docs"] == good["chunks"]
    assert passages(store) == hits
    code, out, err = ragkit("index", str(corpus), "--store", str(store), "-q")
    assert code == 0 and "5 unchanged" in out, err


# ---------------------------------------------------------------- SIGKILL mid-index


def make_corpus(root: Path, n: int) -> None:
    root.mkdir()
    for i in range(n):
        sentences = [f"Document {i} sentence {j} mentions token{i}x{j}." for j in range(40)]
        (root / f"doc{i:03d}.txt").write_text(" ".join(sentences))


@pytest.mark.parametrize("engine", ENGINES)
def test_sigkill_mid_index_then_rerun_has_no_duplicate_and_no_gap(
    tmp_path: Path, engine: str
) -> None:
    corpus = tmp_path / "corpus"
    make_corpus(corpus, 30)
    store = tmp_path / "store"
    profile = engine_profile(tmp_path, engine, "indexing:\n  batch_bytes: 4000\n")
    cmd = [sys.executable, "-m", "ragkit.cli", "index", str(corpus), "--store", str(store)]
    cmd += ["--profile", str(profile), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = store / "manifest.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            files = json.loads(manifest.read_text())["files"]
            if sum(e["status"] == "done" for e in files.values()) >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "indexing finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < sum(e.status == "done" for e in Manifest.load(manifest).files.values()) < 30
    if engine == "edge":  # the killed writer left its shard unsealed, never wrongly sealed
        assert not seal_path(store / "edge").exists()

    code, _, err = ragkit(*cmd[3:])  # the re-run: the real CLI, in this process
    assert code == 0, err
    st = open_store(EmbeddedStore(path=str(store)), read_only=True)
    try:
        assert st.engine == engine
        docs = st.qdrant.filter_documents()
        ids = [d.id for d in docs]
        assert len(ids) == len(set(ids))
        per_source: dict[str, set[int]] = {}
        for d in docs:
            per_source.setdefault(d.meta["source"], set()).add(d.meta["chunk_index"])
        man = Manifest.load(manifest)
        assert len(per_source) == len(man.files) == 30
        for src, entry in man.files.items():
            assert entry.status == "done" and per_source[src] == set(range(entry.chunks)), src
        assert st.bm25_count() == len(ids)
        hits = st.bm25_search("token17x7", top_k=1)
        assert hits and hits[0].meta["source"].endswith("doc017.txt")
    finally:
        release_store(st)
    assert stats(store)["integrity"] == "ok"


# ---------------------------------------------------------------- SIGKILL mid-commit

WRITER = """
import sys, numpy as np
from haystack import Document
from ragkit.config import EmbeddedStore
from ragkit.stores.store import open_store
path, engine, first, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(first)
vecs = rng.standard_normal((n, 384)); vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
docs = [Document(id=f"d{first + i}", content=f"chunk {first + i} word{(first + i) % 97}",
                 embedding=v.tolist(), meta={"source": f"f{(first + i) % 7}.txt"})
        for i, v in enumerate(vecs)]
st = open_store(EmbeddedStore(path=path, engine=engine))
st.write(docs)
print("commit", flush=True)
st.commit()
print("committed", flush=True)
"""


def synthetic(first: int, n: int) -> np.ndarray:
    vecs = np.random.default_rng(first).standard_normal((n, DIM))
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("engine", "second", "when"),
    [("local", 300, "commit"), ("edge", 8000, "commit"), ("edge", 8000, "hnsw")],
    ids=["local", "edge-commit-starts", "edge-during-hnsw-build"],
)
def test_sigkill_mid_commit_keeps_every_written_chunk(
    tmp_path: Path, engine: str, second: int, when: str
) -> None:
    """Kill the writer inside ``commit`` (Edge: its optimizer builds HNSW; both: BM25 save)."""
    store = tmp_path / "store"
    base = subprocess.run(
        [sys.executable, "-c", WRITER, str(store), engine, "0", "400"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert base.returncode == 0, base.stderr
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store), engine, "400", str(second)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "commit"
    if when == "hnsw":  # the optimizer's new segment has started its HNSW graph
        deadline = time.time() + 120
        while not list(store.glob("edge/temp_segments/*/vector_index")):
            assert proc.poll() is None and time.time() < deadline, "no HNSW build seen"
            time.sleep(0.01)
        time.sleep(0.3)
        assert proc.poll() is None  # still building
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    st = open_store(EmbeddedStore(path=str(store)))  # the writer that opens next
    try:
        assert st.engine == engine and st.count() == 400 + second
        assert st.bm25_problem is None  # the BM25 save is atomic: old or new, never half
        st.rebuild_bm25()  # what `ragkit index` does to BM25 that misses chunks Qdrant has
        vecs = synthetic(400, second)
        for i in (0, second // 2, second - 1):
            top = st.dense_search(vecs[i].tolist(), top_k=1)
            assert top[0].id == f"d{400 + i}"
        assert st.bm25_count() == 400 + second
        if engine == "edge":  # the killed optimizer's half-built segment is gone
            assert not list((store / "edge").glob("temp_segments/*"))
    finally:
        release_store(st)
    st = open_store(EmbeddedStore(path=str(store)), read_only=True)
    try:
        assert st.count() == 400 + second
    finally:
        release_store(st)


# ---------------------------------------------------------------- truncated or corrupt files


def _edge_segment(store: Path) -> Path:
    return next((store / "edge" / "segments").iterdir())


def _cut(path: Path, size: int) -> Path:
    with path.open("r+b") as fh:
        fh.truncate(size)
    return path


def _garbage(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(np.random.default_rng(3).bytes(min(len(data), 4096)) + data[4096:])
    return path


def _sqlite(store: Path) -> Path:
    return store / "qdrant" / "collection" / "ragkit" / "storage.sqlite"


# (engine, damage, remedy): "repair", "delete" (and re-index) or "index" (a writer heals it)
DAMAGES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("local", lambda s: _cut(_sqlite(s), 0), "index"),
    ("local", lambda s: _cut(_sqlite(s), _sqlite(s).stat().st_size // 2), "delete"),
    ("local", lambda s: _garbage(_sqlite(s)), "delete"),
    # Edge opens this one and answers with other vectors: only the seal sees it
    ("edge", lambda s: _garbage(_edge_segment(s) / "vector_storage/vectors/chunk_0.mmap"), "repair"),
    ("edge", lambda s: _cut(_edge_segment(s) / "vector_storage/vectors/chunk_0.mmap", 2048), "repair"),
    # Edge opens this one with points missing
    ("edge", lambda s: _cut(_edge_segment(s) / "mutable_id_tracker.mappings", 100), "repair"),
    # Edge panics on this one (a Rust assertion, a BaseException in Python)
    ("edge", lambda s: _cut(_edge_segment(s) / "vector_storage/deleted/status.dat", 0), "repair"),
    ("edge", lambda s: _cut(_edge_segment(s) / "segment.json", 0), "repair"),
    ("edge", lambda s: _garbage(_edge_segment(s) / "payload_storage/page_0.dat"), "repair"),
    ("edge", lambda s: _garbage(s / "edge" / "wal" / "open-1"), "repair"),
    ("edge", lambda s: (s / "edge" / "edge_config.json").unlink() or s / "edge/edge_config.json", "repair"),
    ("edge", lambda s: _cut(seal_path(s / "edge"), 10), "repair"),
]  # fmt: skip
DAMAGE_IDS = [
    "local-sqlite-emptied", "local-sqlite-truncated", "local-sqlite-garbage",
    "edge-vectors-garbage", "edge-vectors-truncated", "edge-id-tracker-truncated",
    "edge-deleted-status-emptied", "edge-segment-json-emptied", "edge-payload-garbage",
    "edge-wal-garbage", "edge-config-deleted", "edge-seal-truncated",
]  # fmt: skip


@pytest.mark.parametrize(
    ("indexed", "damage", "remedy"), DAMAGES, ids=DAMAGE_IDS, indirect=["indexed"]
)
def test_damaged_vector_files_get_one_diagnosis_and_the_remedy_restores_them(
    indexed, tmp_path: Path, damage: Callable[[Path], Path], remedy: str
) -> None:
    engine, corpus, store = indexed[0], indexed[1], copy_of(indexed, tmp_path)
    damage(store)
    before = tree(store)
    said = {
        "stats": ragkit("stats", "--store", str(store)),
        "query": ragkit("query", WINDS, "--store", str(store), "--pipeline", "retrieve"),
    }
    if remedy != "index":  # a writer that cannot heal it refuses it the same way
        said["index"] = ragkit("index", str(corpus), "--store", str(store), "-q")
    if remedy == "delete":
        said["repair"] = ragkit("repair", "--store", str(store), "-q")
    assert tree(store) == before  # nothing rebuilt, recreated or saved
    lines = {cmd: err for cmd, (_, _, err) in said.items()}
    assert all(code == 1 for code, _, _ in said.values()), said
    assert len(set(lines.values())) == 1, lines  # word for word the same diagnosis
    line = lines["stats"]
    assert line.count("\n") == 1 and "Traceback" not in line and "panicked" not in line, line
    assert line.startswith(f"error: store {store} is damaged: "), line

    if remedy == "delete":
        assert line.endswith(f"; delete {store} and re-index\n"), line
        shutil.rmtree(store)
        code, _, err = ragkit(
            "index", str(corpus), "--store", str(store), "-q", "--profile",
            str(engine_profile(tmp_path, engine)),
        )  # fmt: skip
        assert code == 0, err
    else:
        assert line.endswith(f"; run `ragkit repair --store {store}`\n"), line
        cmd = ("index", str(corpus)) if remedy == "index" else ("repair",)
        code, out, err = ragkit(*cmd, "--store", str(store), "-q")
        assert code == 0, err
    assert_restored(indexed, store)


def test_sealed_hnsw_segment_damage_never_reaches_the_engine(tmp_path: Path) -> None:
    """HNSW segments (immutable, past the indexing threshold) are sealed like the others.

    Unsealed, Edge opens a segment whose vector matrix is truncated and returns other
    neighbours, and a flipped id-tracker byte can abort the whole process; the seal check
    runs before the engine reads a byte. The opens run in a child process all the same.
    """
    store = tmp_path / "store"
    st = open_store(EmbeddedStore(path=str(store), engine="edge"))
    try:
        vecs = synthetic(0, 9000)
        st.write(
            [
                Document(
                    id=f"d{i}", content=f"chunk {i}", embedding=v.tolist(), meta={"source": "a"}
                )
                for i, v in enumerate(vecs)
            ]
        )
        st.commit()
        assert st.qdrant.info()["indexed_vectors"] > 0
    finally:
        release_store(st)
    segment = next(p.parent.parent for p in (store / "edge").rglob("matrix.dat"))
    probe = (
        "import sys\nfrom ragkit.config import EmbeddedStore\n"
        "from ragkit.stores.store import StoreError, open_store\n"
        "try:\n    open_store(EmbeddedStore(path=sys.argv[1]), read_only=True)\n"
        "except StoreError as exc:\n    print(exc)\nelse:\n    print('opened')\n"
    )
    for rel, damage in (
        ("vector_storage/matrix.dat", lambda p: _cut(p, p.stat().st_size // 2)),
        ("id_tracker.mappings", _flip_middle),
        ("vector_index/links_compressed.bin", _garbage),
    ):
        copy = tmp_path / f"copy-{Path(rel).name}"
        shutil.copytree(store, copy)
        shutil.copy2(seal_path(store / "edge"), seal_path(copy / "edge"))
        damaged = damage(copy / segment.relative_to(store) / rel)
        run = subprocess.run(
            [sys.executable, "-c", probe, str(copy)], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == (
            f"store {copy} is damaged: {damaged} {_problem(run.stdout, damaged)}; "
            f"run `ragkit repair --store {copy}`\n"
        )


def _flip_middle(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, min(mid + 64, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _problem(line: str, file: Path) -> str:
    """The problem text of a one-line diagnosis of ``file`` (checked against the known ones)."""
    problem = line.split(f"{file} ", 1)[1].rsplit("; run `", 1)[0]
    assert problem.startswith(("has ", "does not match its checksum")), line
    return problem


# ---------------------------------------------------------------- two processes

HOLDER = """
import sys, time
from ragkit.config import EmbeddedStore
from ragkit.stores.store import open_store
st = open_store(EmbeddedStore(path=sys.argv[1]), read_only=sys.argv[2] == "ro")
print("open", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_second_process_gets_one_in_use_line(indexed, tmp_path: Path, mode: str) -> None:
    """A writer or a reader holds the store; every command of another process says so."""
    store = copy_of(indexed, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        for cmd in (
            ("stats",),
            ("query", WINDS, "--pipeline", "retrieve"),
            ("index", str(indexed[1]), "-q"),
            ("repair", "-q"),
        ):
            code, _, err = ragkit(*cmd, "--store", str(store))
            assert code == 1 and err.count("\n") == 1, err
            assert f"is in use by another ragkit process (pid {holder.pid})" in err, err
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the OS drops the lock
        holder.wait()
    assert_restored(indexed, store)


# ---------------------------------------------------------------- repair: BM25 and source files


def test_repair_rebuilds_bm25_from_the_vectors_without_re_embedding(
    indexed, tmp_path: Path
) -> None:
    store = copy_of(indexed, tmp_path)
    segment = next((store / "bm25").glob("seg-*.npz"))
    _garbage(segment)
    info = stats(store)
    assert "ragkit repair" in info["integrity"] or "checksum" in info["integrity"], info
    code, out, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 0, err
    assert "0 files re-indexed" in out  # BM25 came back from the vector engine's texts
    assert_restored(indexed, store)


def test_repair_re_indexes_from_the_source_files_what_the_vectors_lost(
    indexed, tmp_path: Path
) -> None:
    store = copy_of(indexed, tmp_path)
    lost = str((indexed[1] / "solar_system.md").resolve())
    st = open_store(EmbeddedStore(path=str(store)))
    try:  # the vector half alone loses one file's chunks; BM25 and the manifest keep them
        assert st.qdrant.delete_by_filter({"field": "meta.source", "operator": "==", "value": lost})
        if st.engine == "edge":
            st.qdrant.commit()
    finally:
        release_store(st)
    code, _, err = ragkit("stats", "--store", str(store))
    assert code == 0 and "ragkit repair" in err, err
    code, out, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 0 and "1 files re-indexed" in out, err
    assert_restored(indexed, store)


@pytest.mark.parametrize("indexed", ["edge"], indirect=True)  # local: tests/stores/test_damage.py
def test_repair_rebuilds_a_lost_store_json_from_the_edge_shard(indexed, tmp_path: Path) -> None:
    store = copy_of(indexed, tmp_path)
    good = (store / "store.json").read_text()
    (store / "store.json").unlink()
    code, _, err = ragkit("stats", "--store", str(store))
    assert code == 1 and err == (
        f"error: store {store} is damaged: {store / 'store.json'} is missing; "
        f"run `ragkit repair --store {store}`\n"
    )
    code, out, err = ragkit("repair", "--store", str(store), "-q")
    assert code == 0 and "edge engine" in out and "0 files re-indexed" in out, err
    assert (store / "store.json").read_text() == good
    assert_restored(indexed, store)


# ---------------------------------------------------------------- local mode -> Edge


@pytest.mark.parametrize("indexed", ["local"], indirect=True)
def test_migrate_moves_a_local_store_to_edge_with_the_same_results(indexed, tmp_path: Path) -> None:
    store = copy_of(indexed, tmp_path)
    questions = [WINDS, "Pompeii eruption", "longest river in Africa", "first computer"]
    before = [passages(store, q) for q in questions]
    meta = json.loads((store / "store.json").read_text())
    code, out, err = ragkit("repair", "--migrate", "--store", str(store))
    assert code == 0, err
    assert out.startswith(f"migrated store {store} from Qdrant local mode to Qdrant Edge: ")
    assert f"{indexed[3]['chunks']} chunks copied without re-embedding" in out
    assert "migrating" in err  # the progress bar
    assert json.loads((store / "store.json").read_text()) == {**meta, "engine": "edge"}
    assert not (store / "qdrant").exists() and seal_path(store / "edge").exists()
    assert sorted(p.name for p in store.iterdir()) == sorted(
        [".lock", "bm25", "edge", "edge.seal.json", "manifest.json", "store.json"]
    )
    assert [passages(store, q) for q in questions] == before
    assert_restored(indexed, store)
    code, out, err = ragkit("repair", "--migrate", "--store", str(store), "--json")
    assert code == 0 and json.loads(out)["already"] is True, err


@pytest.mark.parametrize("indexed", ["local"], indirect=True)
def test_a_failed_migration_leaves_the_local_store_as_it_was(
    indexed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ragkit.stores.edge as edge

    store = copy_of(indexed, tmp_path)
    before = tree(store)

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(edge.EdgeDocumentStore, "commit", disk_full)
    code, _, err = ragkit("repair", "--migrate", "--store", str(store), "-q")
    assert code == 1 and err.count("\n") == 1 and "No space left on device" in err, err
    assert tree(store) == before  # no half-built shard left, store.json still local
    monkeypatch.undo()
    assert_restored(indexed, store)
    assert stats(store)["engine"] == "local"


MIGRATE = """
import sys
from ragkit.config import EmbeddedStore
from ragkit.stores.store import migrate_to_edge
print(migrate_to_edge(EmbeddedStore(path=sys.argv[1])).line(), flush=True)
"""


def test_sigkill_mid_migration_leaves_the_local_store_and_a_rerun_finishes(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    st = open_store(EmbeddedStore(path=str(store), engine="local"))
    try:
        vecs = synthetic(0, 1500)
        st.write(
            [
                Document(
                    id=f"d{i}", content=f"chunk {i}", embedding=v.tolist(), meta={"source": "a"}
                )
                for i, v in enumerate(vecs)
            ]
        )
        st.commit()
    finally:
        release_store(st)
    before = tree(store)
    proc = subprocess.Popen([sys.executable, "-c", MIGRATE, str(store)], stdout=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (store / "edge.migrating" / "segments").exists():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((store / "store.json").read_text())["engine"] == "local"
    assert {k: v for k, v in tree(store).items() if not k.startswith("edge")} == before

    st = open_store(EmbeddedStore(path=str(store)), read_only=True)
    try:  # still a local-mode store, whole
        assert st.engine == "local" and st.count() == 1500
        want = [d.id for d in st.dense_search(vecs[7].tolist(), top_k=5)]
    finally:
        release_store(st)
    rerun = migrate_to_edge(EmbeddedStore(path=str(store)))  # the re-run, in this process
    assert "1500 chunks copied" in rerun.line()
    assert not (store / "edge.migrating").exists()
    st = open_store(EmbeddedStore(path=str(store)), read_only=True)
    try:
        assert st.engine == "edge" and st.count() == 1500
        assert [d.id for d in st.dense_search(vecs[7].tolist(), top_k=5)] == want
    finally:
        release_store(st)


# ---------------------------------------------------------------- the local-mode hint


def test_a_large_local_store_hints_once_at_the_migration(
    indexed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ragkit.stores.store as store_module

    store = copy_of(indexed, tmp_path)
    monkeypatch.setattr(store_module, "LOCAL_HINT_CHUNKS", indexed[3]["chunks"] - 1)
    code, _, err = ragkit("query", WINDS, "--store", str(store), "--pipeline", "retrieve")
    assert code == 0
    hints = [line for line in err.splitlines() if "ragkit repair --migrate" in line]
    if indexed[0] == "edge":
        assert not hints, err
        return
    assert hints == [
        f"warning: store {store} holds {indexed[3]['chunks']:,} chunks in Qdrant local mode, "
        f"which scans every vector in Python (slow past {indexed[3]['chunks'] - 1:,}); "
        f"`ragkit repair --migrate --store {store}` moves it to Qdrant Edge (HNSW) without "
        "re-embedding"
    ], err
    monkeypatch.setattr(store_module, "LOCAL_HINT_CHUNKS", indexed[3]["chunks"])
    code, _, err = ragkit("stats", "--store", str(store))
    assert code == 0 and "--migrate" not in err, err  # not past the threshold: no hint


def test_new_stores_use_edge_and_existing_local_stores_stay_local(indexed, tmp_path: Path) -> None:
    """The default engine is for new stores only; store.json decides for existing ones."""
    store = copy_of(indexed, tmp_path)
    code, _, err = ragkit("index", str(indexed[1]), "--store", str(store), "-q")
    assert code == 0, err
    assert json.loads((store / "store.json").read_text())["engine"] == indexed[0]
    new = tmp_path / "new"
    code, _, err = ragkit("index", str(indexed[1] / "faq.jsonl"), "--store", str(new), "-q")
    assert code == 0, err
    assert json.loads((new / "store.json").read_text())["engine"] == "edge"
    assert (new / "edge").is_dir() and not (new / "qdrant").exists()
    with pytest.raises(StoreError, match="vector engine"):
        other = "edge" if indexed[0] == "local" else "local"
        open_store(EmbeddedStore(path=str(store), engine=other))
