"""`make bench`: run every benchmark, print one report and write it into docs/benchmarks.md.

Each benchmark module has a ``main()`` returning rows (dicts with ``benchmark`` and ``case`` keys and
its measured columns). Run a subset by name: ``python benchmarks/run_all.py rouge_speed``. A full run replaces
the part of docs/benchmarks.md between :data:`BEGIN` and :data:`END` and nothing else: the page's notes and its
GPU results (``benchmarks/gpu_bench.py --docs`` writes those between markers of their own) stay as they are.
A subset only prints its report, unless ``--report PAGE`` names a page to write it into.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import Row, machine_description, markdown, replace_marked, tables  # noqa: E402
from common.io import write_text  # noqa: E402

BENCHMARKS = {
    "build_data_speed": "SFT data building (`tools build-sft-data`)",
    "rouge_speed": "Scoring: ROUGE with Mecab morphemes (`tools score`)",
    "infer_throughput": "Inference: one at a time vs fixed batches vs the token budget (`tools infer`)",
    "full_size": "Full-size data: the synthetic set's 506 train / 408 test dialogues (`build-sft-data`, `tools infer`)",
    "convert_speed": "Conversion: EXAONE 3.x → Llama layout (`tools convert-exaone`)",
}
REPORT = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- make bench:begin -->"
END = "<!-- make bench:end -->"


def summary_row(row: Row) -> Row:
    """The columns every benchmark shares, for the one summary table."""
    unit = next((key for key in ("examples/s", "pairs/s", "GB/s") if key in row), None)
    count = next((row[key] for key in ("examples", "pairs", "shards") if key in row), "")
    return {"benchmark": row["benchmark"], "case": row["case"], "items": count, "seconds": row.get("seconds", ""),
            "throughput": f"{row[unit]} {unit}" if unit else "", "vs sequential": row.get("vs sequential", "")}


def run(names: list[str]) -> str:
    """Run the benchmarks ``names``; the report: when and where, one summary table, then each benchmark's tables."""
    results: dict[str, tuple[list[Row], float]] = {}
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        start = time.perf_counter()
        rows = importlib.import_module(f"benchmarks.{name}").main()
        results[name] = (rows, time.perf_counter() - start)
    sections = [
        f"Measured by `make bench` on {datetime.date.today().isoformat()}: {machine_description()}.",
        "",
        markdown([summary_row(row) for rows, _ in results.values() for row in rows if "seconds" in row]),
        "",
    ]
    for name, (rows, took) in results.items():
        sections += [f"### {BENCHMARKS[name]}", "", f"`python benchmarks/{name}.py` (took {took:.0f} s)", ""]
        sections += [line for table in tables(rows) for line in (table, "")]
    return "\n".join(sections)


def with_report(page: Path, report: str) -> str:
    """The text of ``page`` with ``report`` between its markers (and nothing else changed)."""
    new = replace_marked(page.read_text(encoding="utf-8") if page.is_file() else "", BEGIN, END, report)
    if new is None:
        raise SystemExit(f"{page} has no {BEGIN} … {END} block to write the report into")
    return new


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="BENCHMARK", help=f"a subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--report", type=Path, metavar="PAGE",
                        help="write the report into PAGE's marked block (default: docs/benchmarks.md after a full run)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    page = args.report or (None if args.names else REPORT)  # a subset replaces no recorded report by itself
    if page:
        with_report(page, "")  # a page without the markers is refused now, not after the run
    report = run(args.names or list(BENCHMARKS))
    print(report)
    if page:
        write_text(page, with_report(page, report))
        print(f"wrote the report into {page}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
