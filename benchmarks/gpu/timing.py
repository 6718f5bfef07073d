"""Running a phase: time limits (soft, checked by the phase's loops, and hard, by SIGALRM), the failure or
timeout it records instead of stopping the run, and the device synchronisation and memory helpers."""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

# Seconds per phase when --max-minutes is 8 (the default); every limit scales with --max-minutes. Their sum
# (≈ 7.6 min) plus start-up stays inside 8 minutes even when every phase runs to its limit.
PHASE_LIMITS = {
    "build 7.8B model": 40,
    "hf batch 1": 25,
    "hf fixed batch": 40,
    "hf token budget": 45,
    "hf best budget": 50,
    "vllm save weights": 45,
    "lora step": 40,
    "full fine-tune step": 40,
    "vllm": 130,
}
DEFAULT_MINUTES = 8.0


class PhaseTimeout(BaseException):
    """A phase ran past its hard limit (a BaseException, so library ``except Exception`` cannot swallow it)."""


class PhaseFailed(Exception):
    """A phase failed for the reason in its message (recorded as ``failed: <message>``)."""


@contextlib.contextmanager
def hard_limit(seconds: float):
    """Raise :class:`PhaseTimeout` in this (main) thread after ``seconds``."""
    if not hasattr(signal, "setitimer") or seconds <= 0:
        yield
        return

    def on_alarm(signum, frame):
        raise PhaseTimeout(f"hard limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Clock:
    """A phase's soft deadline: loops check it before starting a batch or step they expect to overrun."""

    limit: float
    start: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, expected_seconds: float) -> bool:
        return self.elapsed + expected_seconds <= self.limit


def one_line(error: BaseException) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


def failure_status(error: BaseException) -> str:
    import torch

    if isinstance(error, PhaseTimeout):
        return f"timeout: {error}"
    if isinstance(error, PhaseFailed):
        return f"failed: {error}"
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "failed: CUDA out of memory"
    return f"failed: {one_line(error)}"


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**30, 1) if device.startswith("cuda") else None


def free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


class PhaseLog(Protocol):
    """Where a phase's outcome goes (``report.Report``)."""

    def phase(self, name: str, status: str, seconds: float, limit: float | None) -> None: ...


def run_phase(report: PhaseLog, name: str, limit: float, cases: Sequence[dict[str, Any]],
              fn: Callable[[Clock], Any], device: str) -> bool:
    """Run ``fn`` under a soft ``limit`` (its own loops check the clock) and a hard one (1.25 × + 10 s);
    any failure or timeout becomes the status of this phase and of its cases still running."""
    if limit < 1:
        skip(report, name, cases, "the --max-minutes budget is spent")
        return False
    clock = Clock(limit)
    for case in cases:
        case["status"] = "running"
    status = "ok"
    try:
        with hard_limit(limit * 1.25 + 10):
            fn(clock)
    except (Exception, PhaseTimeout) as error:  # noqa: BLE001 - every phase records its own failure
        status = failure_status(error)
        if not isinstance(error, PhaseTimeout):
            traceback.print_exc(file=sys.stderr)
    finally:
        free_memory(device)
    for case in cases:
        if case["status"] == "running":
            if status == "ok":
                case["status"] = "ok"
            else:
                case["status"] = status + (" (partial results)" if case.get("seconds") or case.get("seconds_per_step")
                                           else "")
    report.phase(name, status, clock.elapsed, limit)
    return status == "ok"


def skip(report: PhaseLog, name: str, cases: Sequence[dict[str, Any]], reason: str) -> None:
    for case in cases:
        case["status"] = f"skipped: {reason}"
    report.phase(name, f"skipped: {reason}", 0.0, None)
