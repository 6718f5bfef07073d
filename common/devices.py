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
            build = " (a CPU-only build: install a CUDA build, README 'GPU set-up')" if torch.version.cuda is None else ""
            raise UserError(f"--device {device}: no CUDA GPU is available to torch {torch.__version__}{build}")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: the MPS backend is not available on this machine")
    return device


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers)."""
    import os

    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max", encoding="ascii").read().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count and return it. ``None``: ``OMP_NUM_THREADS`` when set (`tools demo`
    sets it for its stages), else :func:`available_cpus`."""
    import os

    import torch

    if threads is None and os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        threads = int(os.environ["OMP_NUM_THREADS"])
    threads = threads or available_cpus()
    torch.set_num_threads(threads)
    return threads
