"""`make bench` (benchmarks/run_all.py): one summary table over every benchmark, then the details."""

import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO))

from benchmarks import run_all  # noqa: E402
from benchmarks.common import markdown, tables  # noqa: E402


def test_markdown_table():
    assert markdown([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]).splitlines() == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | y |"]


def test_one_table_per_benchmark_with_its_own_columns():
    rows = [{"benchmark": "a", "case": "x", "seconds": 1}, {"benchmark": "b", "case": "y", "prefill s": 2},
            {"benchmark": "a", "case": "z", "seconds": 3}]
    assert tables(rows) == [markdown([rows[0], rows[2]]), markdown([rows[1]])]
    assert "prefill s" in tables(rows)[1]


def test_the_batching_plot_is_an_800_by_450_png(tmp_path):
    import struct

    from benchmarks.infer_throughput import CASES, plot

    rows = [{"benchmark": "infer", "case": f"{name}, {case.name}", "vs sequential": f"{speed}×", "peak memory MB": 20}
            for name in ("fixtures", "dev") for case, speed in zip(CASES, (1.0, 0.5, 1.2, 1.3))]
    data = plot(rows, tmp_path / "batching.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (800, 450)


def test_summary_row_takes_the_shared_columns():
    infer = {"benchmark": "infer", "case": "batch 16", "examples": 64, "seconds": 0.5, "examples/s": 116.3,
             "vs sequential": "7.0×", "outputs": "identical"}
    rouge = {"benchmark": "rouge", "case": "cold", "pairs": 408, "seconds": 0.6, "pairs/s": 654.5}
    assert run_all.summary_row(infer) == {"benchmark": "infer", "case": "batch 16", "items": 64, "seconds": 0.5,
                                          "throughput": "116.3 examples/s", "vs sequential": "7.0×"}
    assert run_all.summary_row(rouge)["throughput"] == "654.5 pairs/s"


def test_every_listed_benchmark_exists():
    for name in run_all.BENCHMARKS:
        assert (REPO / "benchmarks" / f"{name}.py").is_file()


def test_a_subset_prints_the_report_without_replacing_the_recorded_one():
    recorded = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "build_data_speed"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Measured by `make bench` on ")
    assert "| benchmark | case | items | seconds | throughput | vs sequential |" in lines
    assert sum(line.startswith("| build-sft-data |") for line in lines) == 6  # summary + details
    assert (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8") == recorded


def test_a_full_report_replaces_only_its_marked_block(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Notes by hand\n\n{run_all.BEGIN}\nold report\n{run_all.END}\n\n## GPU\nkept\n",
                    encoding="utf-8")
    run_all.write_report("new report\n", page)
    assert page.read_text(encoding="utf-8") == \
        f"# Notes by hand\n\n{run_all.BEGIN}\nnew report\n{run_all.END}\n\n## GPU\nkept\n"


def test_a_page_without_the_markers_is_left_alone(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Notes by hand\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="has no <!-- make bench:begin --> … <!-- make bench:end --> block"):
        run_all.write_report("new report\n", page)
    assert page.read_text(encoding="utf-8") == "# Notes by hand\n"


def test_unknown_benchmark_is_refused():
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run_all.main(["no_such_benchmark"])
