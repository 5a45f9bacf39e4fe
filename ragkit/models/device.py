"""Pick the device and dtype for a model: fast defaults, explicit overrides, clear errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ragkit.models.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device"]

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def resolve_device(device: str = "auto", dtype: str = "auto") -> tuple[str, torch.dtype]:
    """Resolve ``device``/``dtype`` settings into a concrete torch device string and dtype.

    ``auto`` picks CUDA with bf16 (fp16 where bf16 is unsupported) when a GPU is visible, and
    CPU with fp32 otherwise: half precision on CPU is slower and less accurate for small models.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``auto``, ``float32``/``fp32``, ``float16``/``fp16`` or ``bfloat16``/``bf16``.

    Returns:
        ``(device, dtype)``, e.g. ``("cpu", torch.float32)``.

    Raises:
        ModelLoadError: CUDA requested but unavailable, or an unknown device/dtype.
    """
    import torch

    dev = (device or "auto").strip().lower()
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    elif dev.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError("CUDA requested but not available; use device: cpu or auto")
        if ":" in dev:
            index = dev.split(":", 1)[1]
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise ModelLoadError(
                    f"CUDA device {dev!r} does not exist ({torch.cuda.device_count()} visible); "
                    "use device: cuda or auto"
                )
    elif dev == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ModelLoadError("MPS requested but not available; use device: cpu or auto")
    elif dev != "cpu":
        raise ModelLoadError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")

    kind = (dtype or "auto").strip().lower()
    if kind == "auto":
        if dev.startswith("cuda"):
            return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if dev == "mps":
            return dev, torch.float16
        return dev, torch.float32
    if kind not in _DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return dev, getattr(torch, _DTYPES[kind])
