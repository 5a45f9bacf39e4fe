"""Inter-process lock on an embedded store directory.

Qdrant local mode allows one client per path. Taking our own lock first turns a second
process into a clear "store is in use" error instead of a storage traceback.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ragkit.errors import RagkitError


class StoreInUseError(RagkitError, RuntimeError):
    """Another process holds the embedded store."""


class StoreLock:
    """An exclusive, non-blocking ``flock`` on ``<store>/.lock``; released on close or exit."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreInUseError naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUseError(
                f"store {self.path.parent} is in use by another ragkit process (pid {holder}); "
                "wait for it to finish or use another --store"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock; safe to call twice."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
