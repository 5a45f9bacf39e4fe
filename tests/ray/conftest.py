"""A local two-CPU Ray cluster on 127.0.0.1 for the ``--ray`` tests, started once per session.

``ray start --head --block`` runs as a child process; ending it stops every Ray process it
started (and only those). Its workers inherit this session's environment (offline models, the
test cache, one OpenMP thread), so they load models exactly as the single-process runs do.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before Ray is first imported in this session (it reads its auth mode at import): token
# authentication on, with this session's own token, for the head and for the drivers (the tests);
# no usage reports from either.
_AUTH = Path(tempfile.mkdtemp(prefix="rk-ray-auth-"))
(_AUTH / "auth_token").write_text(secrets.token_hex(32))
atexit.register(shutil.rmtree, _AUTH, True)
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN_PATH", str(_AUTH / "auth_token"))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address (``127.0.0.1:PORT``) of a Ray head with two CPUs, no dashboard.

    Ray binds its own node address (on Linux it replaces a loopback ``--node-ip-address`` with
    the machine's), so the cluster is reached through 127.0.0.1 but is not confined to it.
    """
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rk-ray-"))  # short: Ray's socket paths have a limit
    ray_bin = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray_bin),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--include-dashboard=false",
        # every fixed default port taken from the OS instead, so two sessions (xdist) never clash
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    # no 30 s drain on SIGTERM (it is for Kubernetes pods serving traffic, not for a test run)
    env = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    log = open(temp / "head.log", "w+b")  # noqa: SIM115 - read back on failure, closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in (temp / "head.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{(temp / 'head.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
