"""The CPU benchmarks run as a user runs them: `make bench` (benchmarks/run_all.py) prints one summary table over
every benchmark, then the details, and writes them only into its marked block of docs/benchmarks.md; the batching
benchmark checks its outputs and draws its plot."""

import re
import shutil
import struct
import subprocess
import sys

import pytest

from helpers import REPO

PAGE = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- make bench:begin -->", "<!-- make bench:end -->"


def bench(script, *args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_a_subset_writes_its_report_into_the_marked_block_of_the_page_named(tmp_path):
    """The real page, copied: the report replaces its `make bench` block; the notes and the GPU block stay byte for
    byte. The recorded page itself is not touched (a subset writes only where --report says)."""
    recorded = PAGE.read_text(encoding="utf-8")
    page = tmp_path / "benchmarks.md"
    shutil.copy(PAGE, page)
    result = bench("run_all.py", "rouge_speed", "--report", page)  # the quickest benchmark
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Measured by `make bench` on ")
    assert lines[2] == "| benchmark | case | items | seconds | throughput | vs sequential |"
    assert re.fullmatch(r"\| rouge \| cold: tokenize all \+ ROUGE-1/2/L \(tools score\) \| 408 \| [\d.]+ \| [\d.]+ pairs/s \|  \|",
                        lines[4])
    assert sum(line.startswith("| rouge |") for line in lines) == 8  # summary + details
    assert "### Scoring: ROUGE with Mecab morphemes (`tools score`)" in lines
    written = page.read_text(encoding="utf-8")
    assert written == recorded[:recorded.index(BEGIN) + len(BEGIN)] + "\n" + result.stdout.strip() + "\n" + \
        recorded[recorded.index(END):]
    assert PAGE.read_text(encoding="utf-8") == recorded


def test_a_page_without_the_markers_is_refused_before_anything_runs(tmp_path):
    page = tmp_path / "notes.md"
    page.write_text("# Notes by hand\n", encoding="utf-8")
    result = bench("run_all.py", "build_data_speed", "--report", page)
    assert result.returncode == 1 and "running" not in result.stderr
    assert f"{page} has no {BEGIN} … {END} block to write the report into" in result.stderr
    assert page.read_text(encoding="utf-8") == "# Notes by hand\n"


def test_an_unknown_benchmark_is_refused_and_every_listed_one_exists():
    result = bench("run_all.py", "no_such_benchmark")
    assert result.returncode == 1 and "unknown benchmark(s) no_such_benchmark; choose from " in result.stderr
    listed = result.stderr.strip().split("choose from ")[1].split(", ")
    assert "infer_throughput" in listed and all((REPO / "benchmarks" / f"{name}.py").is_file() for name in listed)


@pytest.mark.extended  # a whole benchmark run (~15 s): CI runs it (-m extended)
def test_infer_throughput_reproduces_the_sequential_outputs_and_draws_an_800_by_450_png(tmp_path):
    """Every batching case must give the one-at-a-time outputs (the script fails otherwise)."""
    result = bench("infer_throughput.py", "--sets", "fixtures", "--repeats", 1, "--new-tokens", 2, "--no-threads",
                   "--plot", tmp_path / "batching.png")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| infer (tiny model, CPU, 1 thread) |")]
    assert [row.split(" | ")[1] for row in rows] == [
        "fixtures, sequential (--batch-size 1)", "fixtures, fixed 16 (--batch-size 16 --max-batch-tokens 0)",
        "fixtures, default (--max-batch-tokens 8192)"]
    assert [row.rstrip(" |").split(" | ")[-1] for row in rows] == ["reference", "identical", "identical"]
    data = (tmp_path / "batching.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (800, 450)
