"""training/cpu_overlay.py: the overlay never trains into the base model and refuses data of the wrong kind. (The
overlay on every shipped recipe: tests/test_recipes.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import DEV, REPO, TRAIN, one_line_error, tools_cli


# --------------------------------------------------------------------------- outputs are never a model


@pytest.fixture
def base_model(tmp_path) -> Path:
    folder = tmp_path / "models" / "base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    return folder


@pytest.mark.parametrize("output, how", [
    (lambda base: base, "is"),
    (lambda base: base.parent, "contains"),
    (lambda base: base / "run", "is inside"),
])
@pytest.mark.parametrize("option", ["--output-dir", "--prepared-dir"])
def test_cpu_overlay_never_trains_into_the_base_model(tmp_path, base_model, output, how, option):
    before = sorted(os.listdir(base_model.parent))
    folders = {"--output-dir": tmp_path / "out", option: output(base_model)}
    args = [arg for pair in folders.items() for arg in pair]
    message = one_line_error(tools_cli("cpu-overlay", REPO / "recipes" / "exaone_lora.yml", "--base-model", base_model,
                                       "--train-data", TRAIN, *args, "--config-out", tmp_path / "cpu.yml"))
    assert f"{option} {output(base_model)} {how} --base-model {base_model}" in message
    assert sorted(os.listdir(base_model.parent)) == before and os.listdir(base_model) == ["config.json"]
    assert not (tmp_path / "cpu.yml").exists()


def test_cpu_overlay_refuses_data_of_the_wrong_kind(tmp_path, tiny_model):
    sft = tmp_path / "sft.jsonl"
    assert tools_cli("build-sft-data", "--input", DEV, "--output", sft).exit_code == 0
    message = one_line_error(tools_cli("cpu-overlay", REPO / "recipes" / "exaone_dpo.yml", "--base-model", tiny_model,
                                 "--train-data", sft, "--eval-data", sft, "--output-dir", tmp_path / "o",
                                 "--config-out", tmp_path / "c.yml"))
    assert f"--train-data {sft}: rows have no 'chosen', 'rejected'" in message and "DPO pairs" in message
    assert not (tmp_path / "c.yml").exists()
