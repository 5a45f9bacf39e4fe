"""``ragkit bench serve``: a bounded load test of ``ragkit serve`` against the same work in-process.

The server runs as its own process (``python -m ragkit.cli serve``) over a store (by default the
sample corpus, indexed into a temporary folder); an httpx client sends fixed questions to
``POST /retrieve/run`` with 1 client, then N concurrent clients (asyncio), and a few clients to
``POST /rag/run``. Reported: p50/p95/p99 latency, requests per second, errors (goal: 0) and the
server's resident memory after warm-up and at the end (goal: flat).

The baseline is the same questions answered by the same pipelines loaded in another fresh
process (:class:`~ragkit.serve.engine.Engine`, warm: what the server does, minus HTTP), over a
copy of the store (an embedded store is open in one process at a time). Its requests alternate
one by one with the 1-client HTTP requests, so load elsewhere on the machine hits both alike.
:func:`ragkit.ask` per call (a script's way: load, warm, answer, close each time) is timed too.
Goals: HTTP adds at most 10% at p50 with 1 client; with N clients p95 is at most 4x the 1-client
p50. Absolute times only compare on one machine.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragkit.bench.table import render_rows
from ragkit.bench.timing import Stopwatch, timed

__all__ = ["OVERHEAD_GOAL", "TAIL_GOAL", "format_table", "run_serve_bench"]

OVERHEAD_GOAL = 1.10
"""HTTP p50 / in-process p50 on retrieve with 1 client."""
TAIL_GOAL = 4.0
"""p95 with N clients / 1-client p50 on retrieve."""

QUESTIONS = (
    "Which planet has the strongest winds?",
    "What is the largest planet in the Solar System?",
    "Why is Mars red?",
    "Which planet rotates on its side?",
    "What are Saturn's rings made of?",
    "Where is Mount Etna?",
    "What was the most powerful eruption in recorded history?",
    "What is a Plinian eruption?",
    "Which volcano destroyed Pompeii?",
    "What causes volcanic eruptions?",
    "Which river is the longest in Asia?",
    "What is the Three Gorges Dam?",
    "Which river flows through Egypt?",
    "What is the largest river by discharge?",
    "Who designed the Analytical Engine?",
    "Who wrote the first computer program?",
    "When was the transistor invented?",
    "What was ENIAC?",
    "What is the Great Red Spot?",
    "How many moons does Mars have?",
)


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 (nearest rank) and the mean of a latency sample, in seconds."""
    ordered = sorted(seconds)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    return {
        "p50": statistics.median(ordered),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "mean": statistics.fmean(ordered),
    }


def _rss_mb(pid: int) -> float:
    from ragkit.serve.engine import rss_bytes

    return rss_bytes(pid) / 2**20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Baseline:
    """The in-process baseline: a child process with the same pipelines loaded over a copy of
    the store, answering one question at a time on request (``python -m
    ragkit.bench.serve_bench``), so its timings interleave with the server's."""

    def __init__(self, store: str, profile: str | None, pipelines: list[str]) -> None:
        job = json.dumps({"store": store, "profile": profile, "pipelines": pipelines})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ragkit.bench.serve_bench", job],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._read()  # "ready" once the pipelines are loaded

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the in-process baseline exited {self.proc.wait()}")
        return json.loads(line)

    def time(self, op: str, pipeline: str, question: str) -> float:
        """Seconds the child took for one question (``op``: run on its engine, or ask)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "pipeline": pipeline, "q": question}) + "\n")
        return float(self._read())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _child_main(job: dict[str, Any]) -> None:
    """The baseline child: load once, then time each question read from stdin."""
    from ragkit.answering.ask import ask
    from ragkit.serve.engine import Engine
    from ragkit.serve.settings import ServeSettings

    settings = ServeSettings(store=job["store"], profile=job["profile"], pipelines=job["pipelines"])
    engine = Engine.open(settings)
    print(json.dumps("ready"), flush=True)
    try:
        for line in sys.stdin:
            req = json.loads(line)
            with Stopwatch() as clock:
                if req["op"] == "ask":  # a script's way: load, warm, answer, close, every call
                    ask(
                        req["q"],
                        req["pipeline"],
                        store=job["store"],
                        profile=job["profile"],
                        top_k=5,
                    )
                else:
                    engine.submit(req["pipeline"], req["q"], 5).result()
            print(json.dumps(clock.seconds), flush=True)
    finally:
        engine.close()


def _post(http: Any, pipeline: str, question: str) -> tuple[float, str | None]:
    """One timed request with a blocking client; the error line, if it failed."""
    with Stopwatch() as clock:
        try:
            response = http.post(f"/{pipeline}/run", json={"question": question, "top_k": 5})
            error = None if response.status_code == 200 else f"HTTP {response.status_code}"
        except Exception as exc:  # noqa: BLE001 - any transport failure counts as an error
            error = f"{type(exc).__name__}: {exc}"
    return clock.seconds, error


async def _load(
    url: str, pipeline: str, questions: list[str], clients: int, timeout: float
) -> dict[str, Any]:
    """``clients`` closed-loop clients working through ``questions`` against ``url``."""
    import httpx

    pending = list(reversed(questions))
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:

        async def client() -> None:
            while pending:
                question = pending.pop()
                with Stopwatch() as clock:
                    try:
                        response = await http.post(
                            f"/{pipeline}/run", json={"question": question, "top_k": 5}
                        )
                    except httpx.HTTPError as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        continue
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                latencies.append(clock.seconds)

        with Stopwatch() as wall:
            await asyncio.gather(*(client() for _ in range(clients)))
    return _summary(latencies, errors, clients, len(questions), wall.seconds)


def _summary(
    latencies: list[float], errors: list[str], clients: int, requests: int, wall: float
) -> dict[str, Any]:
    return {
        "clients": clients,
        "requests": requests,
        "errors": len(errors),
        "error_samples": errors[:3],
        "seconds": wall,
        "requests_per_second": len(latencies) / wall if wall > 0 else 0.0,
        **(_percentiles(latencies) if latencies else {}),
    }


def _start_server(
    store: str, profile: str | None, pipelines: list[str], log: Path, startup_timeout: float
) -> tuple[subprocess.Popen[bytes], str]:
    """``ragkit serve`` in a child process on a free port; returns it once ``/health`` answers."""
    import httpx

    port = _free_port()
    cmd = [sys.executable, "-m", "ragkit.cli", "serve", "--store", store, "--port", str(port)]
    cmd += ["--pipelines", ",".join(pipelines)]
    if profile:
        cmd += ["--profile", profile]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ragkit serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"ragkit serve was not up after {startup_timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_serve_bench(
    store: str | None = None,
    profile: str | None = None,
    requests: int = 200,
    clients: int = 16,
    rag_clients: int = 2,
    rag_requests: int = 6,
    ask_calls: int = 5,
    timeout: float = 120.0,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the load test and its in-process baselines; see the module docstring.

    Args:
        store: An indexed store; None: the sample corpus indexed into a temporary folder.
        profile: Profile for the server and the baselines; None: the default profile.
        requests: Requests per retrieve run (1 client, then ``clients`` clients).
        clients: Concurrent clients of the second retrieve run.
        rag_clients: Concurrent clients on ``rag``; 0 skips the rag runs.
        rag_requests: Requests of the rag run (and of its in-process baseline).
        ask_calls: :func:`ragkit.ask` calls for the per-call baseline; 0 skips it.
        timeout: Seconds one request may take.
        progress: Say what runs, on stderr.

    Returns:
        Settings, machine, runs and baselines, and the table rows.
    """
    import httpx

    say: Callable[[str], None] = (
        (lambda line: print(f"bench serve: {line}", file=sys.stderr, flush=True))
        if progress
        else (lambda line: None)
    )
    work = Path(tempfile.mkdtemp(prefix="ragkit-bench-serve-"))
    try:
        if store is None:
            from ragkit.indexing.run import index_files

            store = str(work / "store")
            sample = Path(__file__).resolve().parents[1] / "data" / "sample"  # package data
            say(f"indexing the sample corpus into {store}")
            index_files([sample], store=store, profile=profile)
        # the baseline reads a copy: an embedded store is open in one process at a time
        copy = work / "baseline-store"
        shutil.copytree(store, copy, ignore=shutil.ignore_patterns(".lock"))
        return _measure(
            store, str(copy), profile, requests, clients, rag_clients, rag_requests, ask_calls,
            timeout, work, say, httpx,
        )  # fmt: skip
    finally:
        shutil.rmtree(work / "baseline-store", ignore_errors=True)


def _measure(
    store: str,
    copy: str,
    profile: str | None,
    requests: int,
    clients: int,
    rag_clients: int,
    rag_requests: int,
    ask_calls: int,
    timeout: float,
    work: Path,
    say: Callable[[str], None],
    httpx: Any,
) -> dict[str, Any]:
    """Start the server and the baseline child, run every load, then report rows and goals."""
    pipelines = ["retrieve", *(["rag"] if rag_clients else [])]
    retrieve_q = [QUESTIONS[i % len(QUESTIONS)] for i in range(requests)]
    rag_q = [QUESTIONS[i % len(QUESTIONS)] for i in range(rag_requests)] if rag_clients else []
    say(f"starting ragkit serve ({', '.join(pipelines)}) and the in-process baseline")
    startup, (proc, url) = timed(
        lambda: _start_server(store, profile, pipelines, work / "server.log", startup_timeout=600)
    )
    baseline = _Baseline(copy, profile, pipelines)
    runs: dict[str, Any] = {}
    in_process: dict[str, Any] = {}
    try:
        _warm_up(baseline, url, rag_q, timeout)
        rss_start = _rss_mb(proc.pid)
        say(f"retrieve, 1 client, {requests} requests, interleaved with the in-process baseline")
        runs["retrieve_1"], in_process["retrieve"] = _interleaved(
            baseline, url, retrieve_q, timeout, httpx
        )
        say(f"retrieve, {clients} clients, {requests} requests")
        runs["retrieve_n"] = asyncio.run(_load(url, "retrieve", retrieve_q, clients, timeout))
        if rag_q:
            say(f"rag in-process, {rag_requests} questions one at a time")
            in_process["rag"] = _percentiles([baseline.time("run", "rag", q) for q in rag_q])
            say(f"rag, {rag_clients} clients, {rag_requests} requests")
            runs["rag"] = asyncio.run(_load(url, "rag", rag_q, rag_clients, timeout))
        rss_end = _rss_mb(proc.pid)
        ask_times = [baseline.time("ask", "retrieve", q) for q in retrieve_q[:ask_calls]]
    finally:
        _stop(proc)
        baseline.close()
    settings = {"profile": profile, "requests": requests, "clients": clients,
                "rag_clients": rag_clients, "rag_requests": rag_requests, "top_k": 5}  # fmt: skip
    return _report(settings, startup, {"start": rss_start, "end": rss_end}, runs, in_process,
                   ask_times)  # fmt: skip


def _warm_up(baseline: _Baseline, url: str, rag_q: list[str], timeout: float) -> None:
    """Untimed: every pipeline has run on both sides before anything is read."""
    for q in QUESTIONS[:10]:
        baseline.time("run", "retrieve", q)
    asyncio.run(_load(url, "retrieve", list(QUESTIONS[:10]) * 2, 4, timeout))
    if rag_q:
        baseline.time("run", "rag", rag_q[0])
        asyncio.run(_load(url, "rag", rag_q[:1], 1, timeout))


def _interleaved(
    baseline: _Baseline, url: str, questions: list[str], timeout: float, httpx: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One HTTP client and the in-process baseline, request by request, who goes first alternating.

    A burst of load elsewhere on the machine then hits both alike. Returns the HTTP run's summary
    and the baseline's percentiles and rate.
    """
    http_times, local_times, errors = [], [], []
    with httpx.Client(base_url=url, timeout=timeout) as http:
        wall = 0.0
        for i, q in enumerate(questions):
            if i % 2:
                local_times.append(baseline.time("run", "retrieve", q))
            seconds, error = _post(http, "retrieve", q)
            wall += seconds
            if error:
                errors.append(error)
            else:
                http_times.append(seconds)
            if not i % 2:
                local_times.append(baseline.time("run", "retrieve", q))
    local = _percentiles(local_times)
    local["requests_per_second"] = 1 / statistics.fmean(local_times)
    return _summary(http_times, errors, 1, len(questions), wall), local


def _report(
    settings: dict[str, Any],
    startup: float,
    rss: dict[str, float],
    runs: dict[str, Any],
    in_process: dict[str, Any],
    ask_times: list[float],
) -> dict[str, Any]:
    """The JSON result: settings, machine, runs and baselines, the rows and the goals."""
    result: dict[str, Any] = {
        "settings": settings,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "server_startup_seconds": startup,
        "rss_mb": rss,
        "runs": runs,
        "in_process": in_process,
        "ask_per_call": _percentiles(ask_times) if ask_times else None,
    }
    result["rows"] = _rows(result)
    tail = runs["retrieve_n"]["p95"] / runs["retrieve_1"]["p50"]
    result["goals"] = {
        "overhead_p50": result["rows"][0]["ratio"],
        "overhead_goal_met": result["rows"][0]["ratio"] <= OVERHEAD_GOAL,
        "tail_ratio": tail,
        "tail_goal_met": tail <= TAIL_GOAL,
        "errors": sum(r["errors"] for r in runs.values()),
    }
    return result


def _row(metric: str, value: float, baseline: float | None, name: str, unit: str) -> dict:
    """One row; ratio = value / baseline (for latency: how many times the baseline's time)."""
    ratio = value / baseline if baseline else None
    return {"metric": metric, "value": value, "baseline": baseline, "baseline_name": name,
            "unit": unit, "ratio": ratio}  # fmt: skip


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Retrieve rows (1 client vs in-process, N clients vs 1 client), rag rows, errors, RSS."""
    runs, base = result["runs"], result["in_process"]
    one, many = runs["retrieve_1"], runs["retrieve_n"]
    n = many["clients"]
    local = base["retrieve"]
    rows = [
        *(_row(f"retrieve {p}, 1 client", one[p], local[p], "in-process", "s")
          for p in ("p50", "p95", "p99")),
        _row("retrieve req/s, 1 client", one["requests_per_second"],
             local["requests_per_second"], "in-process", "/s"),
        *(_row(f"retrieve {p}, {n} clients", many[p], one["p50"], "1-client p50", "s")
          for p in ("p50", "p95", "p99")),
        _row(f"retrieve req/s, {n} clients", many["requests_per_second"],
             one["requests_per_second"], "1 client", "/s"),
    ]  # fmt: skip
    if result["ask_per_call"]:
        rows.append(_row("retrieve p50, 1 client", one["p50"], result["ask_per_call"]["p50"],
                         "ragkit.ask per call", "s"))  # fmt: skip
    if "rag" in runs:
        rag, rag_base = runs["rag"], base["rag"]["p50"]
        c = rag["clients"]
        rows.append(_row(f"rag p50, {c} clients", rag["p50"], rag_base, "in-process, 1 at a time",
                         "s"))  # fmt: skip
        rows.append(_row(f"rag p95, {c} clients", rag["p95"], rag_base, "in-process p50", "s"))
    errors = sum(r["errors"] for r in runs.values())
    total = sum(r["requests"] for r in runs.values())
    rows.append(_row(f"errors (of {total} requests)", errors, None, "", "n"))
    rss = result["rss_mb"]
    rows.append(_row("server RSS at end (MiB)", rss["end"], rss["start"], "after warm-up", "MiB"))
    return rows


def _fmt(value: float | None, unit: str) -> str:
    """`table.fmt_value` for this table's units: ms up to 10 s, counts and MiB as integers."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if value < 10 else f"{value:,.1f} s"
    if unit == "/s":
        return f"{value:,.1f}/s"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:,.0f}"


def format_table(result: dict[str, Any]) -> str:
    """The report: settings, then ``metric / ragkit serve / baseline / ratio`` rows and goals."""
    s, goals = result["settings"], result["goals"]
    lines = [
        f"serve bench: {s['requests']} retrieve requests per run (top_k {s['top_k']}), "
        f"{s['clients']} concurrent clients, {s['rag_requests']} rag requests from "
        f"{s['rag_clients']} clients; {result['machine']}; server up in "
        f"{result['server_startup_seconds']:.1f} s",
    ]
    lines += render_rows(
        result["rows"], ratio_digits=2, header="ragkit serve", value_key="value", fmt=_fmt
    )
    lines.append(
        f"goals: HTTP overhead at p50, 1 client {goals['overhead_p50']:.2f}x "
        f"(goal <= {OVERHEAD_GOAL:.2f}x: {'met' if goals['overhead_goal_met'] else 'missed'}); "
        f"p95 with {s['clients']} clients / 1-client p50 {goals['tail_ratio']:.2f}x "
        f"(goal <= {TAIL_GOAL:.0f}x: {'met' if goals['tail_goal_met'] else 'missed'}); "
        f"errors {goals['errors']} (goal 0)"
    )
    return "\n".join(lines)


if __name__ == "__main__":  # the in-process baseline's child (see _Baseline)
    _child_main(json.loads(sys.argv[1]))
