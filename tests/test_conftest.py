"""conftest.run_once: what the Axolotl runs are made with (once per test run, shared, failures recorded)."""

import pytest


def test_makes_once_and_every_caller_gets_the_same_record(run_once):
    made = []

    def make(directory):
        made.append(directory)
        (directory / "out.txt").write_text("done", encoding="utf-8")
        return {"path": str(directory / "out.txt")}

    first = run_once("run-once-check", make)
    assert run_once("run-once-check", make) == first and len(made) == 1
    assert made[0].is_dir() and (made[0] / "out.txt").read_text(encoding="utf-8") == "done"


def test_a_failure_fails_every_caller_without_running_again(run_once):
    made = []

    def make(directory):
        made.append(directory)
        raise RuntimeError("axolotl exploded")

    for _ in range(2):
        with pytest.raises(pytest.fail.Exception, match="run-once-failing: RuntimeError: axolotl exploded"):
            run_once("run-once-failing", make)
    assert len(made) == 1
