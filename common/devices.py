"""One rule for the torch device (``auto`` is the GPU when torch sees one, else the CPU) and for CPU threads.

CPU threads (`--threads`; default: :func:`default_threads`). Generation runs thousands of small parallel steps, and
at each step every thread waits for the slowest. A thread on a core another process keeps busy is the slowest at
every step, and torch's OpenMP runtime (the libgomp it bundles) makes it worse: a thread that waits spins for
about 3 ms before it sleeps, taking the core from the threads still working. Beside two busy processes on 2
cores, all CPUs as threads ran 3–17× slower than one thread (docs/inference.md, "CPU threads"). So the default
counts only the CPUs other processes leave idle, and :func:`let_waiting_threads_sleep` makes waiting threads sleep
at once (``OMP_WAIT_POLICY=PASSIVE``) for load that comes later; `tools` calls it before torch is imported,
because libgomp reads its settings once, when it is loaded.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, MutableMapping

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


MAX_THREADS = 1024  # more than any machine this runs on has cores; far fewer than torch can start (100,000 crash)
WAIT_POLICY = "OMP_WAIT_POLICY"
SPIN_COUNT = "GOMP_SPINCOUNT"


def let_waiting_threads_sleep(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a wait policy (``OMP_WAIT_POLICY`` or
    ``GOMP_SPINCOUNT``); returns whether it was set. Effective only before torch is imported (see the module's
    docstring); subprocesses (Axolotl's, in `tools demo`) inherit it."""
    if WAIT_POLICY in environ or SPIN_COUNT in environ:
        return False
    environ[WAIT_POLICY] = "PASSIVE"
    return True


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (containers)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max", encoding="ascii").read().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def cpu_times(stat_text: str) -> dict[int, tuple[int, int]]:
    """Per CPU number: (idle, total) time from the text of ``/proc/stat`` (idle counts its I/O wait; total counts
    time taken by the hypervisor, ``steal``, as busy)."""
    times = {}
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0].startswith("cpu") and fields[0][3:].isdigit():
            values = [int(value) for value in fields[1:9]]
            times[int(fields[0][3:])] = (values[3] + values[4], sum(values))
    return times


def idle_cpus(before: str, after: str, cpus: Iterable[int]) -> float:
    """How many of ``cpus`` were idle between two readings of ``/proc/stat``: each CPU's idle share, summed."""
    start, end = cpu_times(before), cpu_times(after)
    idle = 0.0
    for cpu in cpus:
        if cpu in start and cpu in end and end[cpu][1] > start[cpu][1]:
            idle += (end[cpu][0] - start[cpu][0]) / (end[cpu][1] - start[cpu][1])
    return idle


IDLE_SAMPLE_SECONDS = 0.2
MOSTLY_IDLE = 0.75  # a CPU counts as free when other processes leave it at least this idle


def default_threads(sample_seconds: float = IDLE_SAMPLE_SECONDS) -> int:
    """The CPUs this process may use (:func:`available_cpus`) that other processes leave idle, measured over
    ``sample_seconds`` from ``/proc/stat``; at least 1. A thread on a CPU something else keeps busy holds up
    every other thread at each step, so one busy core is enough to make two threads slower than one. Where
    ``/proc/stat`` cannot be read: :func:`available_cpus`."""
    import time

    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            before = stat.read()
        time.sleep(sample_seconds)
        with open("/proc/stat", encoding="ascii") as stat:
            after = stat.read()
    except OSError:
        return available_cpus()
    if not cpu_times(after):
        return available_cpus()
    free = int(idle_cpus(before, after, cpus) + (1 - MOSTLY_IDLE))
    return max(1, min(available_cpus(), free))


def threads_from_environment() -> int | None:
    """``OMP_NUM_THREADS`` when it is set to a positive number (`tools demo` sets it for its stages)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def use_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count and return it. ``None``: :func:`threads_from_environment`, else
    :func:`default_threads` (the CPUs other processes leave idle). At most :data:`MAX_THREADS`."""
    import torch

    threads = min(threads or threads_from_environment() or default_threads(), MAX_THREADS)
    torch.set_num_threads(threads)
    return threads
