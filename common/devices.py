"""One rule for the torch device: ``auto`` is the GPU when torch sees one, else the CPU."""

from __future__ import annotations

import re

from common.errors import UserError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(device: str | None = "auto") -> str:
    """``auto``/``None`` → ``cuda`` or ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are checked against
    what this machine has. Anything else is a :class:`UserError` naming the accepted spellings."""
    device = (device or "auto").strip().lower()
    if not _DEVICE.match(device):
        raise UserError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is available to torch {torch.__version__}")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: the MPS backend is not available on this machine")
    return device
