"""Choosing where a model runs: ``"auto"`` picks cuda → mps → cpu."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class DeviceError(RuntimeError):
    """The requested device or dtype is not available here."""


def available_devices() -> list[str]:
    """Devices torch can use on this machine, best first (always ends with ``"cpu"``)."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out + ["cpu"]


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` / ``"cuda"`` / ``"cuda:1"`` / ``"mps"`` / ``"cpu"`` to a usable device.

    Raises:
        DeviceError: an explicit accelerator was asked for and none is visible.
    """
    if str(device) == "auto":
        return torch.device(available_devices()[0])
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "A CUDA GPU was requested but torch sees none (torch.cuda.is_available() is False"
            f"; torch {torch.__version__}). Use device='auto' or 'cpu', or install a CUDA build of torch "
            "(see the README, 'GPU users')."
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"GPU {dev.index} requested but only {torch.cuda.device_count()} visible.")
    if dev.type == "mps" and dev.type not in available_devices():
        raise DeviceError("Apple MPS was requested but is not available here. Use device='auto' or 'cpu'.")
    if dev.type not in ("cuda", "mps", "cpu"):
        raise DeviceError(f"Unsupported device {device!r}; use 'auto', 'cuda', 'mps' or 'cpu'.")
    return dev


def pick_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Resolve ``"float32"`` / ``"bfloat16"`` / ``"float16"``; half precision is refused on the CPU
    for float16 (unsupported kernels) but bfloat16 is allowed (slow, exact enough to compare)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise DeviceError(f"Unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    if dtype == "float16" and device.type == "cpu":
        raise DeviceError("float16 is not supported on the CPU; use float32 or bfloat16.")
    return DTYPES[dtype]
