"""The make-like stage runner behind `tools demo`: skip when up to date, stop at the first failure."""

import os
import sys
from pathlib import Path

import pytest

from demo.stages import Pipeline, Stage, StageFailed, results_table, run_program
from tools.cli import cli
from tools.demo import tools_runner

run_tools = tools_runner(cli)


def writer(path: Path, log: list[str], text: str = "x"):
    def run() -> None:
        log.append(path.name)
        path.write_text(text, encoding="utf-8")

    return run


def two_stage_pipeline(tmp_path: Path, log: list[str]) -> Pipeline:
    source, middle, final = tmp_path / "source.txt", tmp_path / "middle.txt", tmp_path / "final.txt"
    if not source.exists():
        source.write_text("input", encoding="utf-8")
    pipeline = Pipeline()
    pipeline.add(Stage("first", writer(middle, log), outputs=[middle], inputs=[source]))
    pipeline.add(Stage("second", writer(final, log), outputs=[final], inputs=[middle],
                       score=lambda: f"{len(final.read_text())} chars"))
    return pipeline


def test_runs_every_stage_then_skips_up_to_date_ones(tmp_path):
    log: list[str] = []
    results = two_stage_pipeline(tmp_path, log).run()
    assert log == ["middle.txt", "final.txt"]
    assert [result.skipped for result in results] == [False, False]
    assert results[1].score == "1 chars" and results[1].output == tmp_path / "final.txt"

    log.clear()
    results = two_stage_pipeline(tmp_path, log).run()
    assert log == [] and all(result.skipped for result in results)
    assert results[1].score == "1 chars"  # scores are still shown for skipped stages


def test_a_changed_input_reruns_its_stage_and_everything_after(tmp_path):
    log: list[str] = []
    two_stage_pipeline(tmp_path, log).run()
    source = tmp_path / "source.txt"
    later = (tmp_path / "final.txt").stat().st_mtime + 10
    source.write_text("edited", encoding="utf-8")
    os.utime(source, (later, later))
    log.clear()
    two_stage_pipeline(tmp_path, log).run()
    assert log == ["middle.txt", "final.txt"]


def test_a_deleted_output_reruns_only_what_is_missing_and_after(tmp_path):
    log: list[str] = []
    two_stage_pipeline(tmp_path, log).run()
    (tmp_path / "final.txt").unlink()
    log.clear()
    two_stage_pipeline(tmp_path, log).run()
    assert log == ["final.txt"]


def test_first_failure_stops_the_run_with_its_error(tmp_path):
    log: list[str] = []

    def fail() -> None:
        raise StageFailed("boom")

    pipeline = Pipeline()
    pipeline.add(Stage("breaks", fail, outputs=[tmp_path / "never"]))
    pipeline.add(Stage("after", writer(tmp_path / "after.txt", log), outputs=[tmp_path / "after.txt"]))
    with pytest.raises(StageFailed, match=r"stage 1/2 'breaks' failed: boom"):
        pipeline.run()
    assert log == []


def test_a_stage_that_writes_nothing_fails(tmp_path):
    pipeline = Pipeline([Stage("lazy", lambda: None, outputs=[tmp_path / "missing.txt"])])
    with pytest.raises(StageFailed, match="did not write .*missing.txt"):
        pipeline.run()


def test_run_program_reports_exit_code(tmp_path):
    run_program(sys.executable, "-c", "pass")
    with pytest.raises(StageFailed, match="exited with code 3"):
        run_program(sys.executable, "-c", "raise SystemExit(3)")


def test_run_tools_turns_click_errors_into_stage_failures(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(StageFailed, match="tools build-sft-data: .*bad.json"):
        run_tools("build-sft-data", "--input", bad, "--output", tmp_path / "out.jsonl")


def test_results_table(tmp_path):
    log: list[str] = []
    table = results_table(two_stage_pipeline(tmp_path, log).run())
    lines = table.splitlines()
    assert lines[0] == "| stage | time | output | score |"
    assert lines[2].startswith("| first | ") and lines[3].endswith("| 1 chars |")
    assert lines[-1].startswith("| **total** |")
