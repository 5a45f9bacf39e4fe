"""Connecting to a Ray cluster: the options ``--ray`` takes and the one place Ray is imported.

Ray is optional (``pip install 'ragkit[ray]'``); a missing Ray is one actionable error line, never
an import error at CLI start-up. The driver connects once per command and disconnects after, but
leaves a connection the caller made itself (a notebook's ``ray.init``) alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragkit.errors import InvalidInputError, RagkitError

__all__ = [
    "RayMissingError",
    "RayOptions",
    "RayUnavailableError",
    "binary_column",
    "check_address",
    "default_workers",
    "ray_session",
    "require_ray",
]

# forwarded to the workers so they resolve models as the driver does (offline, no telemetry)
FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HAYSTACK_TELEMETRY_ENABLED")


class RayMissingError(RagkitError):
    """``--ray`` was asked for but Ray is not installed."""


class RayUnavailableError(RagkitError):
    """The Ray cluster at the given address cannot be reached."""


class RayOptions(BaseModel):
    """How ``--ray`` runs: where the cluster is, how many workers embed or answer, batch size.

    Attributes:
        address: ``auto`` (the cluster this machine belongs to), ``HOST:PORT`` of a head node,
            ``ray://HOST:10001`` (Ray client), or ``local`` (start a Ray instance in-process).
        workers: Parallel workers (embedding actors, eval readers); None: one per GPU when the
            cluster has GPUs, else one per CPU.
        batch_files: Files per batch handed to a worker; each batch is also one durable commit
            on the driver, so smaller spreads better and redoes less after a crash.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(min_length=1)
    workers: int | None = Field(default=None, ge=1)
    batch_files: int = Field(default=16, ge=1)


def require_ray() -> ModuleType:
    """The ``ray`` module, or one actionable error line when the extra is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library ships in the ``ray[data]`` extra
    except ImportError:
        raise RayMissingError(
            "--ray needs Ray (with Ray Data), which is not installed: pip install 'ragkit[ray]'"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str) -> Iterator[ModuleType]:
    """Connect to the Ray cluster at ``address`` for the ``with`` block; yields the module.

    Raises:
        RayMissingError: Ray is not installed.
        RayUnavailableError: Nothing answers at ``address``.
    """
    ray = require_ray()
    if ray.is_initialized():  # the caller's own connection: use it, leave it open
        yield ray
        return
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            log_to_driver=False,
            include_dashboard=False if address == "local" else None,
            runtime_env={"env_vars": env} if env else None,
        )
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RayUnavailableError(
            f"cannot connect to the Ray cluster at {address!r} ({first[:200]}); start one with "
            "`ray start --head`, or give --ray local for a single-machine run (a cluster with "
            "token authentication needs RAY_AUTH_MODE=token here too)"
        ) from None
    try:
        with _quiet_ray_data():
            ray.data.DataContext.get_current().enable_progress_bars = False  # ragkit draws its own
            yield ray
    finally:
        ray.shutdown()


class _DropNotice(logging.Filter):
    """Drops Ray Data's notice that its progress bars are off (ragkit turned them off)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Progress bars disabled")


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[None]:
    """Ray Data's per-run INFO lines off for the ``with`` block; its warnings stay on."""
    data_logger = logging.getLogger("ray.data")
    progress_logger = logging.getLogger("ray.data._internal.progress")
    previous = data_logger.level
    notice = _DropNotice()
    data_logger.setLevel(logging.WARNING)
    progress_logger.addFilter(notice)
    try:
        yield
    finally:
        progress_logger.removeFilter(notice)
        data_logger.setLevel(previous)


def default_workers(ray: ModuleType, options: RayOptions) -> tuple[int, bool]:
    """(workers, whether each takes a GPU): the option, else one per GPU, else one per CPU."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if options.workers is not None:
        return options.workers, gpus >= options.workers
    if gpus:
        return gpus, True
    return max(1, int(resources.get("CPU", 1))), False


def binary_column(values: list[bytes]) -> Any:
    """A Ray Data column of variable-length bytes (numpy's fixed-width ``S`` would pad each row).

    Batches travel between stages as pickles: Haystack documents and answers are plain
    dataclasses, and pickling keeps every float of every vector exact.
    """
    import numpy as np

    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def check_address(address: str) -> str:
    """``address`` stripped; an empty one is an input error naming the accepted forms."""
    text = address.strip()
    if not text:
        raise InvalidInputError(
            "--ray needs an address: auto, HOST:PORT, ray://HOST:10001 or local"
        )
    return text
