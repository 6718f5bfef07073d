"""demo/pipeline.py: the notes the demo's table gets (what DPO changed, the noise, the comparison), and `make demo`
at full size learning the task, its learning lines catching a broken DPO stage (CI: `-m learning`).

The full demo is not in the default run (pyproject.toml deselects the `learning` marker; `.ci/run` runs it): it takes
about three minutes. One full run, then one short re-run of the DPO stage on a copy with every pair's chosen and
rejected swapped — the mutation no check before training can see. The other mutations are caught before any
training by `tools check-data` (tests/training/test_check_data.py), and every learning line is shown failing on
constructed results in tests/demo/test_learning_checks.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.io import read_jsonl, write_jsonl
from demo.learning_checks import BASE_MAX, DPO_DROP_MAX, SFT_MIN, STOP_MIN
from helpers import DEV, load_json, tools_cli

def run_demo(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([Path(sys.executable).parent / "tools", "demo", "--workdir", workdir, "--full"],
                          env={**os.environ, "DEMO_FAST": "0"}, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def full_demo(run_once):
    """`tools demo --full` once per test run: (workdir, exit code, output)."""

    def make(directory: Path) -> dict:
        done = run_demo(directory / "demo")
        return {"workdir": str(directory / "demo"), "code": done.returncode, "output": done.stdout + done.stderr}

    record = run_once("demo-full", make)
    return Path(record["workdir"]), record["code"], record["output"]


@pytest.mark.learning
def test_the_full_demo_learns_and_every_line_passes(full_demo):
    workdir, code, output = full_demo
    assert code == 0, output[-6000:]
    lines = [line for line in output.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(lines) == 7 and all(line.startswith("PASS ") for line in lines), "\n".join(lines)
    results = load_json(workdir / "demo_results.json")
    assert results["base"] <= BASE_MAX and results["sft"] >= SFT_MIN
    assert results["dpo"] >= results["dpo_start"] - DPO_DROP_MAX
    for tag in ("sft", "dpo"):
        stopped, total = results["details"]["stopped"][tag]
        assert stopped >= STOP_MIN * total, tag
    assert results["sft"] > results["details"]["wording_only"] + 20  # it reads the dialogue


@pytest.mark.learning
def test_swapped_dpo_pairs_fail_the_preference_line(full_demo, tmp_path):
    workdir, code, _ = full_demo
    assert code == 0
    copy = tmp_path / "demo"
    shutil.copytree(workdir, copy, symlinks=True)
    pairs = copy / "data" / "dpo" / "train.jsonl"
    write_jsonl(pairs, [{**row, "chosen": row["rejected"], "rejected": row["chosen"],
                         "score_chosen": row["score_rejected"], "score_rejected": row["score_chosen"]}
                        for row in read_jsonl(pairs)])
    done = run_demo(copy)  # the DPO stage and what follows it run again; SFT and the pairs' checks are up to date
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-6000:]
    failed = [line for line in output.splitlines() if line.startswith("FAIL ")]
    assert any(line.startswith("FAIL DPO learns the preferences") and "swapped" in line for line in failed), output
    assert "SFT (recipes/exaone_sft.yml, axolotl): up to date, skipped" in output


# ---- the demo's table: what DPO changed, the comparison -----------------------------------------------------


def test_dpo_rewards_are_read_from_the_last_trainer_state(tmp_path):
    from demo.pipeline import dpo_rewards_of

    def state(step, history):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))

    assert dpo_rewards_of(tmp_path) == "no trainer_state.json"
    # As TRL's DPOTrainer logs them: rewards/… per training step, eval_rewards/… per evaluation.
    train = [{"step": step, "loss": 0.69, "rewards/accuracies": accuracy, "rewards/margins": margin}
             for step, accuracy, margin in ((1, 0.0, 0.0), (2, 1.0, 0.000168), (3, 0.5, 0.000453))]
    state(2, train[:2])
    state(10, train)  # the highest step, not the last in name order
    assert dpo_rewards_of(tmp_path) == "reward accuracy 0.00 → 0.50, margin +0.000453 (training batch, steps 1–3)"
    state(11, [*train, {"step": 3, "eval_loss": 0.6, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.02}])
    assert dpo_rewards_of(tmp_path) == "reward accuracy 0.75 → 0.75, margin +0.02 (held-out pairs, steps 3–3)"
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 0.7}]}))
    assert dpo_rewards_of(tmp_path) == "no reward metrics logged"  # the run's own state comes first


def test_the_demo_notes_changed_summaries_the_noise_and_the_comparison(write_nikl, systems, tmp_path):
    from demo.pipeline import changed_share, compared_of, selected_of

    rows = [{"name": "checkpoint-1", "metrics": {"rouge1": 4.5}}, {"name": "checkpoint-2", "metrics": {"rouge1": 5.125}}]
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"best": "checkpoint-2", "rows": rows, "within_noise": ["checkpoint-1"]}))
    assert selected_of(selection) == "selected checkpoint-2 (ROUGE-1 5.12); within noise of it: checkpoint-1"
    selection.write_text(json.dumps({"best": "checkpoint-2", "rows": rows, "within_noise": []}))
    assert selected_of(selection) == "selected checkpoint-2 (ROUGE-1 5.12); the others are worse beyond noise"

    items = load_json(DEV)
    same = write_nikl(items, "same.json")
    edited = write_nikl([{**item, "output": item["output"] + (" 끝." if index % 2 else "")}
                         for index, item in enumerate(items)], "edited.json")
    assert changed_share(same, edited) == "2/4 dev summaries differ from the DPO start's"
    assert changed_share(same, same) == "0/4 dev summaries differ from the DPO start's"
    report = tmp_path / "r"
    assert tools_cli("compare", "--input", DEV, *systems, systems[0], "--name", "SFT", "--name", "DPO", "--name",
                     "again", "--report", report).exit_code == 0
    pairs = {pair["second"]: pair for pair in load_json(report / "compare.json")["pairs"]
             if pair["first"] == "SFT" and pair["metric"] == "rouge1"}
    dpo = pairs["DPO"]
    assert compared_of(report / "compare.json") == (
        f"ROUGE-1 vs SFT: DPO {dpo['difference']:+.2f} [{dpo['low']:+.2f}, {dpo['high']:+.2f}] {dpo['verdict']}; "
        "again +0.00 [+0.00, +0.00] not distinguishable")
