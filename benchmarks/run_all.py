"""`make bench`: run every benchmark, print one report and write it to docs/benchmarks.md.

Each benchmark module has a ``main()`` returning rows (dicts with ``benchmark`` and ``case`` keys and
its measured columns). Run a subset by name: ``python benchmarks/run_all.py rouge_speed``.
"""

from __future__ import annotations

import datetime
import importlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import Row, machine_description, markdown, tables  # noqa: E402

BENCHMARKS = {
    "build_data_speed": "SFT data building (`tools build-sft-data`)",
    "rouge_speed": "Scoring: ROUGE with Mecab morphemes (`tools score`)",
    "infer_throughput": "Inference: one at a time vs fixed batches vs the token budget (`tools infer`)",
    "full_size": "Full-size data: the synthetic set's 506 train / 408 test dialogues (`build-sft-data`, `tools infer`)",
    "convert_speed": "Conversion: EXAONE 3.x → Llama layout (`tools convert-exaone`)",
}
REPORT = REPO / "docs" / "benchmarks.md"
# The GPU section: written by hand and by `benchmarks/gpu_bench.py --docs` (it needs a GPU, so `make bench`
# does not run it); every report ends with it, so regenerating docs/benchmarks.md keeps it.
GPU_SECTION = REPO / "docs" / "gpu_benchmarks.md"
NO_GPU_NOTE = (
    "No GPU on this machine: these are CPU numbers for the tiny local model. GPU throughput with an "
    "EXAONE-3.0-7.8B-shaped model has not been measured yet (no GPU was available to the project so far)."
)


def summary_row(row: Row) -> Row:
    """The columns every benchmark shares, for the one summary table."""
    unit = next((key for key in ("examples/s", "pairs/s", "GB/s") if key in row), None)
    count = next((row[key] for key in ("examples", "pairs", "shards") if key in row), "")
    return {"benchmark": row["benchmark"], "case": row["case"], "items": count, "seconds": row.get("seconds", ""),
            "throughput": f"{row[unit]} {unit}" if unit else "", "vs sequential": row.get("vs sequential", "")}


def gpu_section() -> list[str]:
    """docs/gpu_benchmarks.md as report lines (none if the file is missing)."""
    if not GPU_SECTION.is_file():
        return []
    return [GPU_SECTION.read_text(encoding="utf-8").strip("\n"), ""]


def run(names: list[str]) -> str:
    results: dict[str, tuple[list[Row], float]] = {}
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        start = time.perf_counter()
        rows = importlib.import_module(f"benchmarks.{name}").main()
        results[name] = (rows, time.perf_counter() - start)
    sections = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {datetime.date.today().isoformat()}: {machine_description()}.",
        "",
        markdown([summary_row(row) for rows, _ in results.values() for row in rows if "seconds" in row]),
        "",
    ]
    for name, (rows, took) in results.items():
        sections += [f"## {BENCHMARKS[name]}", "", f"`python benchmarks/{name}.py` (took {took:.0f} s)", ""]
        sections += [line for table in tables(rows) for line in (table, "")]
    import torch

    if not torch.cuda.is_available():
        sections += [NO_GPU_NOTE, ""]
    sections += gpu_section()
    return "\n".join(sections)


def main(argv: list[str]) -> None:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    report = run(argv or list(BENCHMARKS))
    print(report)
    if not argv:  # only a full run replaces the recorded report
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(report, encoding="utf-8")
        print(f"wrote {REPORT.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
