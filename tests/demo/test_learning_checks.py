"""The demo's learning lines (demo/learning_checks.py) on constructed results: all pass on a run that learnt,
and each fails — naming the symptom — on the result the broken pipeline it guards against gives."""

from __future__ import annotations

import dataclasses
import json

import pytest

from demo.learning_checks import LearningResults, learning_checks


def learnt(**changes) -> LearningResults:
    results = LearningResults(
        rouge1={"base": 3.1, "sft": 93.0, "dpo_start": 61.0, "dpo": 70.5, "rerank": 69.0},
        wording_only=53.5,
        stopped={"sft": (48, 48), "dpo": (47, 48)},
        selected=("checkpoint-300", 93.0),
        last=("final", 92.4),
        dpo_accuracy=[(0, 0.0), (20, 0.8), (40, 0.9)],
        dpo_vs_start={"difference": 9.5, "low": 6.0, "high": 13.0, "verdict": "DPO better"},
    )
    return dataclasses.replace(results, **changes)


def failing(results: LearningResults) -> dict[str, str]:
    return {check.name: check.detail for check in learning_checks(results) if not check.passed}


def test_a_run_that_learnt_passes_every_line():
    checks = learning_checks(learnt())
    assert [check.name for check in checks] == [
        "base model scores low", "SFT learns the task", "SFT summaries stop", "selection keeps the best",
        "DPO learns the preferences", "DPO keeps the summaries", "DPO summaries stop"]
    assert all(check.passed for check in checks), [check.line() for check in checks if not check.passed]
    assert all(check.line().startswith("PASS ") for check in checks)
    assert "DPO better" in checks[5].detail and "53.50" in checks[1].detail  # compare's verdict, the wording baseline


@pytest.mark.parametrize("broken, line, symptom", [
    # a model that scores without training: the task leaks (e.g. the summary in the prompt)
    (learnt(rouge1={**learnt().rouge1, "base": 40.0}), "base model scores low", "leak"),
    # loss on the prompt, or inference prompted unlike training: the wording is learnt, the names are not
    (learnt(rouge1={**learnt().rouge1, "sft": 55.0}), "SFT learns the task", "loss on the prompt"),
    # train_on_eos: none — the summaries run on to --max-new-tokens
    (learnt(stopped={"sft": (3, 48), "dpo": (2, 48)}), "SFT summaries stop", "end-of-turn token trained"),
    # a checkpoint chosen by the wrong sign
    (learnt(selected=("checkpoint-100", 61.0)), "selection keeps the best", "wrong sign"),
    # chosen and rejected swapped: the policy learns to prefer the worse summaries
    (learnt(dpo_accuracy=[(0, 0.0), (20, 0.15), (40, 0.1)]), "DPO learns the preferences", "swapped"),
    # DPO that collapses: pair accuracy up, summaries worse
    (learnt(rouge1={**learnt().rouge1, "dpo": 40.0}), "DPO keeps the summaries", "collapse"),
    (learnt(stopped={"sft": (48, 48), "dpo": (20, 48)}), "DPO summaries stop", "unlearnt the end of turn"),
])
def test_each_line_fails_naming_the_symptom(broken, line, symptom):
    failed = failing(broken)
    assert line in failed and symptom in failed[line], failed


def test_a_dpo_run_without_two_evaluations_fails_instead_of_passing_by_default():
    failed = failing(learnt(dpo_accuracy=[(40, 0.9)]))
    assert "need the first and the last" in failed["DPO learns the preferences"]


def test_the_limits_are_inclusive():
    assert not failing(learnt(rouge1={**learnt().rouge1, "base": 10.0, "sft": 80.0, "dpo": 59.0}))
    assert "SFT summaries stop" not in failing(learnt(stopped={"sft": (9, 10), "dpo": (9, 10)}))


def test_results_serialise_for_demo_results_json():
    data = json.loads(json.dumps(learnt().to_json()))
    assert data["rouge1"]["dpo_start"] == 61.0 and data["selected"] == ["checkpoint-300", 93.0]
