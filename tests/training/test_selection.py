"""training/selection.py (`tools select-checkpoint`): the rows' intervals and tests against the best, a
malformed trainer state, metric weights checked before generating, the restart it suggests and Ctrl-C."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

from common.env import offline_env
from helpers import (
    DEV,
    TRAIN,
    killed_before,
    lines_in,
    listing,
    many_dialogues,
    one_line_error,
    tools_cli,
    tools_command,
)


class TestResumeBookkeeping:
    """Issue 22, item 6: a resumed run said "prompts truncated: 0" where a clean run said 7; a sidecar with no
    results refused the corrected rerun; select-checkpoint suggested a --restart it did not have; a folder at
    the sidecar path and a trainer_state.json that is a list were tracebacks."""

    def test_select_checkpoint_has_the_restart_it_suggests(self, full_run, write_nikl):
        data = many_dialogues(write_nikl, copies=2, splits=(TRAIN, DEV))
        common = ["select-checkpoint", "--run", full_run, "--input", data, "--no-progress", "--threads", 1,
                  "--batch-size", 1]
        killed_before("generation.hf:HFEngine.generate", 4, *common, "--max-new-tokens", 6)
        result = tools_cli(*common, "--max-new-tokens", 7)
        assert result.exit_code == 1 and result.output.count("Error: ") == 1, result.output
        message = result.output.strip().splitlines()[-1]  # after the progress note naming the checkpoint
        assert "different settings" in message and "pass --restart" in message
        result = tools_cli(*common, "--max-new-tokens", 7, "--restart")
        assert result.exit_code == 0, result.output
        assert sorted(path.name for path in (full_run / "selection").iterdir()) == [
            "checkpoint-1.dev.json", "checkpoint-1.dev.record.json"]

    @pytest.mark.parametrize("state", [[{"global_step": 1}], {"global_step": "1"}, {"log_history": {"a": 1}}])
    def test_a_malformed_trainer_state_is_one_line(self, full_run, state):
        state_file = full_run / "checkpoint-1" / "trainer_state.json"
        state_file.write_text(json.dumps(state), encoding="utf-8")
        message = one_line_error(tools_cli("select-checkpoint", "--run", full_run, "--input", DEV, "--no-progress"))
        assert str(state_file) in message and "from the training run or delete it" in message


class TestMoreWaysIn:
    """Faults beyond the issue's list, held to the same rules: a full or read-only disk under every command
    that writes, Ctrl-C during select-checkpoint, a merged copy of a killed vLLM run."""

    def test_ctrl_c_during_select_checkpoint(self, full_run, write_nikl):
        import signal

        data = many_dialogues(write_nikl, copies=4, splits=(TRAIN, DEV))
        args = ["select-checkpoint", "--run", full_run, "--input", data, "--no-progress", "--threads", 1,
                "--batch-size", 1, "--max-new-tokens", 6]
        sidecar = full_run / "selection" / "checkpoint-1.dev.json.partial.jsonl"
        process = subprocess.Popen([*tools_command(), *map(str, args)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=offline_env())
        deadline = time.monotonic() + 120
        while lines_in(sidecar) < 3:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1] == ("interrupted: nothing half-written is left behind (infer and "
                                                   "select-checkpoint resume when re-run)")
        assert sorted(path.name for path in (full_run / "selection").iterdir()) == [sidecar.name]
        result = tools_cli(*args)
        assert result.exit_code == 0, result.output
        assert sorted(listing(full_run / "selection")) == ["checkpoint-1.dev.json", "checkpoint-1.dev.record.json"]


# ---- select-checkpoint's intervals against the best ---------------------------------------------------------


def selection_of(per_example: dict[str, list[float]]):
    """Rows, one per checkpoint (steps 1, 2, …), compared with the winner as select-checkpoint does."""
    from training.selection import Row, Selection, compare_with_best, winner

    values = {name: np.array(points, dtype=float) for name, points in per_example.items()}
    rows = [Row(name, name, step, None, None, {"rouge1": float(values[name].mean())}, 1.0, "")
            for step, name in enumerate(values, start=1)]
    best = winner(rows, "rouge1")
    compare_with_best(rows, best, values, "rouge1", resamples=10_000, seed=0)
    return Selection("rouge1", rows, best, 10_000, 0)


def test_selection_rows_carry_their_interval_and_test_against_the_best():
    selection = selection_of({"checkpoint-1": [10, 20, 30, 40], "checkpoint-2": [10, 24, 26, 44],
                              "checkpoint-3": [11, 21, 31, 41], "final": [10, 24, 26, 44]})  # 25, 26, 26, 26
    first, best, third, final = selection.rows
    assert selection.best is best  # ties still go to the earliest step
    assert best.vs_best is None
    assert (final.vs_best["difference"], final.vs_best["low"], final.vs_best["high"]) == (0.0, 0.0, 0.0)
    assert final.vs_best["p_value"] == 1.0 and final.vs_best["differing"] == 0
    assert third.vs_best["difference"] == 0.0 and third.vs_best["low"] < 0 < third.vs_best["high"]
    assert first.vs_best["difference"] == -1.0 and (first.vs_best["wins"], first.vs_best["ties"],
                                                    first.vs_best["losses"]) == (1, 1, 2)
    assert [row.name for row in selection.within_noise] == ["checkpoint-1", "checkpoint-3", "final"]
    assert selection.noise_line().startswith("checkpoint-2 is best by ROUGE-1, but the choice is within noise: ")
    table = selection.table()
    assert "Δ ROUGE-1 vs best [95 % interval] | p (Holm, 3) |" in table.splitlines()[0]
    assert "| +0.00 [+0.00, +0.00] (within noise) | 1.000 |" in table
    assert "(within noise: only 3 differ) |" in table  # checkpoint-1: 3 of 4 differ, no verdict possible
    assert selection.to_json()["within_noise"] == ["checkpoint-1", "checkpoint-3", "final"]
    assert selection.markdown() == f"{table}\n\n{selection.noise_line()}\n"


def test_selection_says_when_the_winner_is_beyond_noise():
    selection = selection_of({"checkpoint-1": list(range(30)), "checkpoint-2": [value + 3 for value in range(30)]})
    first = selection.rows[0]
    assert selection.within_noise == [] and first.vs_best["high"] == -3.0 and first.vs_best["p_value"] == 2 / 2**30
    assert selection.noise_line() == (
        "checkpoint-2 is best by ROUGE-1; every other checkpoint is worse beyond noise (paired sign-flip test over "
        "30 dev dialogues, beyond noise when p ≤ 0.05; 10,000 resamples, seed 0).")
    assert "| -3.00 [-3.00, -3.00] | < 0.001 |" in selection.table()


def test_within_noise_follows_the_test_not_the_interval():
    base = [float(value) for value in range(30)]

    def worse_on(count: int) -> list[float]:
        return [value - (5 if index < count else 0) for index, value in enumerate(base)]

    # Worse on 4 of 30: the bootstrap interval leaves out 0, but 4 differing examples cannot reach p ≤ 0.05.
    selection = selection_of({"checkpoint-1": worse_on(4), "checkpoint-2": base})
    first = selection.rows[0]
    assert first.vs_best["high"] < 0 and first.vs_best["p_value"] == 0.125
    assert [row.name for row in selection.within_noise] == ["checkpoint-1"]
    assert "-0.67 [-1.33, -0.17] (within noise: only 4 differ)" in selection.table()
    # Worse on 6 (raw p 2/2^6) twice and on 12 (2/2^12): Holm over the three puts both 6s above 0.05.
    selection = selection_of({"checkpoint-1": worse_on(6), "checkpoint-2": worse_on(12), "checkpoint-3": worse_on(6),
                              "checkpoint-4": base})
    assert [row.vs_best["p_value"] for row in selection.rows[:3]] == [2 / 2**6, 2 / 2**12, 2 / 2**6]
    assert [row.vs_best["p_adjusted"] for row in selection.rows[:3]] == [0.0625, 3 * 2 / 2**12, 0.0625]
    assert [row.name for row in selection.within_noise] == ["checkpoint-1", "checkpoint-3"]
    assert "Holm-adjusted over the 3 compared" in selection.noise_line()
