"""A local two-CPU Ray cluster on 127.0.0.1 for the ``--ray`` tests, started once for them.

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
from pathlib import Path
from typing import Any

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


class LocalCluster:
    """A Ray head with two CPUs and no dashboard, started on first use and stopped after the
    last test that needs it (not at the end of the session: its daemons and the actors Ray Data
    leaves behind take ~20% of a core while they wait).

    Ray binds its own node address (on Linux it replaces a loopback ``--node-ip-address`` with
    the machine's), so the cluster is reached through 127.0.0.1 but is not confined to it.
    """

    def __init__(self) -> None:
        self.address: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._temp: Path | None = None
        self._log: Any = None

    def start(self) -> str:
        """The head's address (``127.0.0.1:PORT``), starting it if it is not running."""
        if self.address is not None:
            return self.address
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
            # every fixed default port taken from the OS instead, so two sessions never clash
            f"--ray-client-server-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ]
        # no 30 s drain on SIGTERM (it is for Kubernetes pods serving traffic, not a test run)
        env = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        self._temp = temp
        self._log = open(temp / "head.log", "w+b")  # noqa: SIM115 - read back on failure
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in (temp / "head.log").read_bytes():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = (temp / "head.log").read_text()[-3000:]
                self.stop()
                raise RuntimeError(f"ray start failed:\n{log}")
            time.sleep(0.2)
        self.address = f"127.0.0.1:{port}"
        return self.address

    def stop(self) -> None:
        """End ``ray start`` (which stops every Ray process it started, and only those)."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._log.close()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
        self.address, self._proc, self._temp, self._log = None, None, None, None


_CLUSTER = pytest.StashKey[LocalCluster]()


@pytest.fixture
def ray_cluster(request: pytest.FixtureRequest) -> str:
    """The address of this session's local Ray head (see :class:`LocalCluster`)."""
    return request.config.stash.setdefault(_CLUSTER, LocalCluster()).start()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the cluster once the next test (on this worker) does not use it."""
    if nextitem is not None and "ray_cluster" in getattr(nextitem, "fixturenames", ()):
        return
    cluster = item.config.stash.get(_CLUSTER, None)
    if cluster is not None:
        cluster.stop()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Whatever ended the run (``-x``, a crash), the head does not outlive it."""
    cluster = session.config.stash.get(_CLUSTER, None)
    if cluster is not None:
        cluster.stop()
