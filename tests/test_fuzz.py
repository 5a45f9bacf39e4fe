"""Property-based checks of the CLI's promises on hostile input (issue 27).

Hypothesis generates YAML pipelines, profiles, ``--store`` values, file names and document
bytes; each run through the real CLI must keep the invariants, whatever the input:

- it succeeds, or says what is wrong on ``error:``/``warning:`` lines, one line per problem;
- it never ends in a traceback;
- it writes nothing outside the store;
- it never loses the chunks of a file that was not deleted;
- it never prints a control character to the terminal, nor a password from a URL.

The default run is derandomized and bounded (about a minute on 2 cores) so CI is repeatable;
``pytest -m slow tests/test_fuzz.py`` runs many more random examples.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_run import runner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragkit.cli import app

REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cretpw"
# C0 but tab and newline, DEL, C1: nothing of this may reach a terminal
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")

BUDGETS = {"ci": 1, "slow": 10}  # example multipliers
MODES = [pytest.param("ci", id="ci"), pytest.param("slow", id="slow", marks=pytest.mark.slow)]


def run_property(mode: str, examples: int, strategy: Any, check: Callable[[Any], None]) -> None:
    """Run ``check`` on ``examples`` (times the mode's multiplier) values of ``strategy``."""
    conf = settings(
        max_examples=examples * BUDGETS[mode],
        deadline=None,
        derandomize=mode == "ci",
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    conf(given(strategy)(check))()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def assert_clean(result: Any, *, validate: bool = False) -> None:
    """The CLI-wide invariants on one run's output."""
    out, err = result.stdout, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in out + err
    assert SECRET not in out + err
    for line in (out + err).split("\n"):
        assert not CONTROL.search(line), repr(line)
        assert len(line) <= 2100, len(line)
    lines = [ln for ln in err.split("\n") if ln.strip()]
    if validate:  # `pipelines validate` prints one problem per line, each naming the file
        return
    assert all(ln.startswith(("error: ", "warning: ")) for ln in lines), lines
    if result.exit_code not in (0, 1):
        assert lines and lines[-1].startswith("error: "), (result.exit_code, lines)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ------------------------------------------------------------------ values that YAML can hold

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["{{ x }}", "{% for %}", "\x1b]0;t\x07", "ragkit.BM25Retriever", "os.system"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
SHIPPED = sorted((REPO / "pipelines").glob("*.yaml"))


@st.composite
def pipeline_texts(draw: st.DrawFn) -> str:
    """A shipped pipeline with one part replaced, a random document, or an alias bomb."""
    kind = draw(st.sampled_from(["mutate", "random", "bomb", "text"]))
    if kind == "random":
        return yaml.safe_dump(draw(values))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "bomb":
        width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
        lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
        for i in range(1, depth):
            lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
        return "\n".join(lines) + "\n"
    data = yaml.safe_load(draw(st.sampled_from(SHIPPED)).read_text())
    comps = data["components"]
    name = draw(st.sampled_from(sorted(comps)))
    where = draw(st.sampled_from(["param", "type", "new_param", "connection", "component"]))
    if where == "param" and comps[name].get("init_parameters"):
        key = draw(st.sampled_from(sorted(comps[name]["init_parameters"])))
        comps[name]["init_parameters"][key] = draw(values)
    elif where == "type":
        comps[name]["type"] = draw(st.text(max_size=40) | st.sampled_from(["os.system", "x.y"]))
    elif where == "new_param":
        comps[name].setdefault("init_parameters", {})[draw(st.text(max_size=12))] = draw(values)
    elif where == "connection" and data.get("connections"):
        conn = draw(st.sampled_from(data["connections"]))
        conn[draw(st.sampled_from(["sender", "receiver"]))] = draw(st.text(max_size=20))
    else:
        comps[name] = draw(values)
    return yaml.safe_dump(data)


@pytest.mark.parametrize("mode", MODES)
def test_pipeline_yaml_never_crashes_validate(mode: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"

    def check(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        result = invoke("pipelines", "validate", str(path))
        assert result.exit_code in (0, 2), (result.exit_code, result.stderr)
        assert_clean(result, validate=True)

    run_property(mode, 60, pipeline_texts(), check)


# ------------------------------------------------------------------ profiles

profile_keys = st.sampled_from(["store", "split", "embedding", "indexing", "components"])
profiles = st.dictionaries(
    profile_keys | st.text(max_size=8), values, max_size=3
) | st.fixed_dictionaries(
    {
        "split": st.fixed_dictionaries(
            {"split_length": st.integers(-3, 50), "split_overlap": st.integers(-3, 60)}
        ),
        "components": st.dictionaries(
            st.sampled_from(["joiner", "retriever", "bm25", "generator", "nothere"]),
            st.fixed_dictionaries(
                {"init_parameters": st.dictionaries(st.text(max_size=8), values, max_size=2)}
            ),
            max_size=2,
        ),
    }
)


@pytest.mark.parametrize("mode", MODES)
def test_profiles_give_one_line_or_run(
    mode: str, tmp_path: Path, sample_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    profile = tmp_path / "profile.yaml"

    def check(data: Any) -> None:
        profile.write_text(yaml.safe_dump(data))
        before = files_under(work)
        result = invoke("query", "what?", "--pipeline", "retrieve", "--profile", str(profile))
        assert_clean(result)
        assert result.exit_code != 0  # there is no store in work/: never created by a query
        assert files_under(work) == before

    run_property(mode, 25, profiles, check)


# ------------------------------------------------------------------ --store values

schemes = st.sampled_from(
    ["http", "HTTP", "Https", "hTTps", "ftp", "file", "qdrant", "grpc", "s3", "", "x+y"]
)


@st.composite
def store_locations(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # URL-shaped: always pointing at the discard port
        creds = draw(st.sampled_from(["", f"alice:{SECRET}@", f"{SECRET}@", f":{SECRET}@"]))
        tail = draw(st.text(alphabet="abc/?#=%:@-_.", max_size=12))
        port = draw(st.sampled_from(["9", "x", "", "99999"]))
        return f"{draw(schemes)}://{creds}127.0.0.1:{port}{('/' + tail) if tail else ''}"
    return draw(
        st.text(alphabet="abcXYZ09 ._-:~@%\x1b\x07\u202e", min_size=0, max_size=16)
        | st.sampled_from([":memory:", " ", ".", "..", "~", "a:b", "C:\\store"])
    )


@pytest.mark.parametrize("mode", MODES)
def test_store_locations_never_write_outside_the_store(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def check(location: str) -> None:
        before = files_under(work)
        result = invoke("stats", "--store", location)
        assert_clean(result)
        assert files_under(work) == before  # stats reads; it never creates
        if "://" in location:
            assert result.exit_code != 0

    run_property(mode, 60, store_locations(), check)


@pytest.mark.parametrize("mode", MODES)
def test_index_writes_only_inside_its_store(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Etna is a volcano in Sicily.")
    counter = iter(range(10**6))

    def check(location: str) -> None:
        here = work / str(next(counter))  # a fresh folder per example
        here.mkdir(parents=True)
        monkeypatch.chdir(here)
        result = invoke("index", str(docs), "--store", location, "-q")
        assert_clean(result)
        written = files_under(here)
        if result.exit_code != 0 or "://" in location:
            assert result.exit_code != 0 or not written
            if "://" in location:
                assert not written, written
            return
        store = (here / Path(location).expanduser()).resolve()
        assert all(store == p.resolve() or store in p.resolve().parents for p in written), written

    run_property(mode, 8, store_locations(), check)


# ------------------------------------------------------------------ file names and document bytes

SUFFIXES = [".txt", ".md", ".html", ".jsonl", ".pdf", ".csv", ""]
names = st.builds(
    lambda stem, suffix: stem + suffix,
    st.text(
        alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
        min_size=1,
        max_size=12,
    ).filter(lambda s: s not in (".", "..") and not s.startswith(".")),
    st.sampled_from(SUFFIXES),
)
contents = (
    st.binary(max_size=300)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.sampled_from(
        [
            b'{"text": "Quokkas live on Rottnest Island."}\n',
            b'[{"text": "a JSON array"}]',
            b"<html><body><p>Cloves grow on Zanzibar.</p></body></html>",
            b"<html><script>x</script></html>",
            b"%PDF-1.4 broken",
            b"Evil \x1b]0;title\x07 text \x1b[2J here.",
            b"",
        ]
    )
)
corpora = st.dictionaries(names, st.tuples(contents, contents), min_size=1, max_size=4)


def manifest_chunks(store: Path) -> dict[str, int]:
    path = store / "manifest.json"
    if not path.exists():
        return {}
    return {s: e["chunks"] for s, e in json.loads(path.read_text())["files"].items()}


@pytest.mark.parametrize("mode", MODES)
def test_documents_never_lose_chunks(mode: str, tmp_path: Path) -> None:
    from ragkit.indexing.loaders import LoadError, load_file

    counter = iter(range(10**6))

    def check(corpus: dict[str, tuple[bytes, bytes]]) -> None:
        root = tmp_path / str(next(counter))
        docs, store = root / "docs", root / "store"
        docs.mkdir(parents=True)
        try:
            for name, (first, _) in corpus.items():
                (docs / name).write_bytes(first)
        except OSError:
            return  # a name this file system refuses (too long in bytes)
        result = invoke("index", str(docs), "--store", str(store), "-q")
        assert_clean(result)
        before = manifest_chunks(store)
        for name, (_, second) in corpus.items():
            (docs / name).write_bytes(second)
        result = invoke("index", str(docs), "--store", str(store), "-q")
        assert_clean(result)
        after = manifest_chunks(store)
        for name, (_, second) in corpus.items():
            src = str((docs / name).resolve())
            try:
                docs_now, _ = load_file(Path(src))
            except LoadError:
                # it failed to load now: whatever it had is still there
                assert after.get(src, 0) == before.get(src, 0), (name, second)
                continue
            assert (after.get(src, 0) > 0) == bool(docs_now), (name, second, after)
        if store.exists() and after:
            code = invoke("stats", "--store", str(store), "--json")
            assert code.exit_code == 0, code.stderr
            assert json.loads(code.stdout)["chunks"] == sum(after.values())
        shutil.rmtree(root, ignore_errors=True)

    run_property(mode, 10, corpora, check)
