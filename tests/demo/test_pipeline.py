"""`make demo` at full size learns the task, and its learning lines catch a broken DPO stage (CI: `-m learning`).

Not in the default run (pyproject.toml deselects the `learning` marker; `.ci/run` runs it): the demo takes about
three minutes. One full run, then one short re-run of the DPO stage on a copy with every pair's chosen and
rejected swapped — the mutation no check before training can see. The other mutations are caught before any
training by `tools check-data` (tests/test_check_data.py), and every learning line is shown failing on constructed
results in tests/test_learning_checks.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.io import read_jsonl, write_jsonl
from helpers import load_json
from demo.learning_checks import BASE_MAX, DPO_DROP_MAX, SFT_MIN, STOP_MIN

pytestmark = pytest.mark.learning


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
