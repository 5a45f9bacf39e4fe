"""Issue 27: what the CLI prints. No terminal escapes from documents or file names in any
command's human output; a template the sandbox refuses is one line; ``--json`` runs print JSON
on stdout and only ``warning:``/``error:`` lines on stderr."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_run import runner

from ragkit.cli import app

REPO = Path(__file__).resolve().parent.parent
TITLE = "\x1b]0;pwned\x07"  # sets the terminal's window title
CLEAR = "\x1b[2J"  # clears the screen
# ESC and the other C0 controls but tab and newline, DEL, C1 (e.g. the one-byte CSI \x9b)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def ragkit(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: {result.exception!r}"
    )
    return result.exit_code, result.stdout, result.stderr


def assert_printable(args: tuple[str, ...], out: str, err: str) -> None:
    found = CONTROL.findall(out + err)
    assert not found, f"{[a[:40] for a in args]} printed {found!r}:\n{out}{err}"


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus whose file names, folder names and texts hold escape sequences, indexed."""
    root = tmp_path_factory.mktemp("escapes")
    docs = root / f"docs{CLEAR}"
    docs.mkdir()
    (docs / f"note{TITLE}.txt").write_text(
        f"Zanzibar cloves {CLEAR}are dried {TITLE}in the sun\x9b31m for a week."
    )
    (docs / "plain.md").write_text("Quokkas live on Rottnest Island near Perth.")
    (docs / f"binary{CLEAR}.txt").write_bytes(b"\x00\x01\x02 not text")
    code, out, err = ragkit("index", str(docs), "--store", str(root / f"store{TITLE}"), "-q")
    assert code == 1 and "indexed:" in out and "binary" in err, out + err  # the binary is skipped
    return root


def test_every_command_prints_no_escape_sequences(evil: Path, tmp_path: Path) -> None:
    docs = evil / f"docs{CLEAR}"
    note = docs / f"note{TITLE}.txt"
    store = evil / f"store{TITLE}"
    damaged = tmp_path / f"damaged{CLEAR}"
    shutil.copytree(store, damaged)
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["files"][str(note)]["chunks"] += 5  # the store now disagrees with its manifest
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    pipeline = tmp_path / f"pipe{TITLE}.yaml"
    pipeline.write_text(
        yaml.safe_dump({"components": {f"x{CLEAR}": {"type": f"evil{TITLE}.Thing"}}})
    )
    dataset = tmp_path / f"qa{CLEAR}.jsonl"
    dataset.write_text(json.dumps({"question": f"why{TITLE}?"}) + "\n")  # no answers
    runs = [
        ("index", str(docs), "--store", str(store), "-q"),
        ("index", str(tmp_path / f"ghost{CLEAR}.txt"), "--store", str(store), "-q"),
        ("index", str(docs / f"binary{CLEAR}.txt"), str(note), "--store", str(store), "-q"),
        ("query", f"Zanzibar {CLEAR}cloves?", "--store", str(store), "--pipeline", "retrieve"),
        ("query", "cloves", "--store", str(store), "--pipeline", "retrieve", "--trace"),
        ("stats", "--store", str(store)),
        ("stats", "--store", str(damaged)),
        ("stats", "--store", str(tmp_path / f"none{TITLE}")),
        ("pipelines", "validate", str(pipeline)),
        ("query", "x", "--store", str(store), "--pipeline", str(pipeline)),
        ("memory", "info", "--store", str(store)),
        ("memory", "add", str(note), "--store", str(store)),
        ("eval", str(dataset), "--limit", "1", "--out", str(tmp_path / "run")),
        ("eval", str(tmp_path / f"missing{TITLE}.jsonl")),
        ("compare", str(tmp_path / f"run{TITLE}"), str(tmp_path / "other")),
    ]
    for args in runs:
        code, out, err = ragkit(*args)
        assert_printable(args, out, err)
        assert out.strip() or err.strip(), args
    # the damage names the file (defused) in the warnings and in the integrity row
    code, out, err = ragkit("stats", "--store", str(damaged))
    assert "warning: store is damaged" in err and "]0;pwned" not in err
    assert "note" in out.split("integrity", 1)[1]
    # repair cannot re-read the damaged file (now binary): its per-file warning names it
    note_bytes = note.read_bytes()
    try:
        note.write_bytes(b"\x00" + note_bytes)
        code, out, err = ragkit("repair", "--store", str(damaged), "-q")
    finally:
        note.write_bytes(note_bytes)
    assert code == 1 and "binary" in err and "note" in err, out + err
    assert_printable(("repair",), out, err)


def test_the_cli_prints_through_one_helper() -> None:
    """Human output goes through ``_echo`` (escape sequences removed), JSON through
    ``_print_json``; no other call to ``typer.echo`` can print a file name raw."""
    source = (REPO / "ragkit" / "cli.py").read_text()
    calls = re.findall(r"typer\.echo\(([^\n]*)", source)
    assert len(calls) == 2, calls
    assert "printable(" in calls[0] and calls[1].startswith("json.dumps(")
    assert "print(" not in re.sub(r"_print_json\(|\.print\(", "", source)


def _template_pipeline(path: Path, expression: str) -> Path:
    template = (
        '{% message role="user" %}\n'
        "{% for d in documents %}{{ d.content }}{% endfor %}\n"
        f"{expression}\n"
        "{% endmessage %}\n"
    )
    path.write_text(
        yaml.safe_dump(
            {
                "components": {
                    "bm25": {
                        "type": "ragkit.retrieval.components.BM25Retriever",
                        "init_parameters": {"top_k": 2},
                    },
                    "prompt_builder": {
                        "type": "haystack.components.builders.chat_prompt_builder.ChatPromptBuilder",
                        "init_parameters": {"template": template},
                    },
                },
                "connections": [
                    {"sender": "bm25.documents", "receiver": "prompt_builder.documents"}
                ],
            }
        )
    )
    return path


def test_template_refused_by_the_sandbox_is_one_line(evil: Path, tmp_path: Path) -> None:
    store = str(evil / f"store{TITLE}")
    # refused only while rendering (the read is not a dunder): the run names the component
    runtime = _template_pipeline(
        tmp_path / "gi_frame.yaml", '{{ (documents|map(attribute="content")).gi_frame.f_globals }}'
    )
    code, out, err = ragkit("pipelines", "validate", str(runtime))
    assert code == 0, err
    code, out, err = ragkit("query", "cloves", "--store", store, "--pipeline", str(runtime))
    assert code == 2, out + err
    assert err.count("\n") == 1 and err.startswith(
        "error: component 'prompt_builder' (ChatPromptBuilder): its template (line 3) "
        "was refused by Haystack's template sandbox: access to attribute 'gi_frame'"
    ), err
    # a dunder read is refused whatever the object: validate (and loading) report it first
    dunder = _template_pipeline(tmp_path / "dunder.yaml", "{{ question.__class__.__mro__ }}")
    code, _, err = ragkit("pipelines", "validate", str(dunder))
    assert code == 2
    assert err == (
        f"{dunder}: components.prompt_builder.init_parameters.template: line 3 reads "
        "'__class__', '__mro__', which Haystack's template sandbox refuses when the template "
        "is rendered; a template may read only its variables and their plain fields\n"
    )
    code, _, err = ragkit("query", "cloves", "--store", store, "--pipeline", str(dunder))
    assert code == 2 and err.count("\n") == 1 and "'__class__'" in err, err


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real ``ragkit`` process with pipes (not a terminal) on stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _machine_output(proc: subprocess.CompletedProcess[str]) -> dict:
    stray = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    stray = [ln for ln in stray if not ln.startswith(("warning: ", "error: "))]
    assert not stray, proc.stderr  # progress bars, bare library warnings, tracebacks
    return json.loads(proc.stdout)


def test_json_runs_print_json_and_only_prefixed_lines_on_stderr(
    sample_corpus: Path, tmp_path: Path
) -> None:
    pytest.importorskip("pypdf")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "TQDM_"))}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    (sample_corpus / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer\n")
    store = tmp_path / "store"
    proc = _cli("index", str(sample_corpus), "--store", str(store), "--json", env=env)
    data = _machine_output(proc)
    assert proc.returncode == 1 and any("broken.pdf" in e for e in data["errors"])
    # a damaged BM25 index is rebuilt from Qdrant, and the run says so as a warning
    (store / "bm25" / "manifest.json").write_text("{broken")
    proc = _cli("index", str(sample_corpus), "--store", str(store), "--json", env=env)
    _machine_output(proc)
    assert "rebuilding BM25" in proc.stderr
    proc = _cli(
        "query", "Which planet has the strongest winds?", "--store", str(store), "--json", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert _machine_output(proc)["answer"]
