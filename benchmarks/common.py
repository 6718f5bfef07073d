"""Shared by the benchmark scripts: a markdown table of result rows, a description of the machine, and the
marked block of docs/benchmarks.md that a script's report replaces."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Iterator, Sequence

Row = dict[str, object]


def markdown(rows: Sequence[Row]) -> str:
    """Rows (dicts with the same keys, in order) as a markdown table."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(key, "")) for key in keys) + " |" for row in rows]
    return "\n".join(lines)


def tables(rows: Sequence[Row]) -> list[str]:
    """One markdown table per ``benchmark`` value, in order of appearance (their columns differ)."""
    groups: dict[object, list[Row]] = {}
    for row in rows:
        groups.setdefault(row["benchmark"], []).append(row)
    return [markdown(group) for group in groups.values()]


def replace_marked(text: str, begin: str, end: str, block: str) -> str | None:
    """``text`` with what lies between the ``begin`` and ``end`` markers replaced by ``block``; None without both."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        return None
    return text[:start + len(begin)] + "\n" + block.strip() + "\n" + text[stop:]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> str:
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return f"{pages * page_size / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        return "unknown"


def machine_description() -> str:
    """One line: CPU, cores, memory, GPU (if any), Python and torch versions."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib()} RAM, {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one CPU thread inside the block (steady numbers on a shared machine), restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
