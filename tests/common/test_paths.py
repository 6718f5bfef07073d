"""common/paths.py: a local path is checked on disk before anything goes to the hub; a missing one is named with
where it came from (an adapter's relative base, a recipe's base_model, a metric's model folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import DEV, INFER, REPO, TRAIN, candidates_file, listing, load_json, one_line_error, tools_cli


# --------------------------------------------------------------------------- 7. paths checked on disk first


@pytest.fixture(scope="module")
def adapter_on_relative_base(tiny_model, tmp_path_factory) -> tuple[Path, Path]:
    """A training folder as the recipes lay it out: models/base (the base) and outputs/lora, an adapter whose
    adapter_config.json records its base as the recipe wrote it, relative: ``models/base``."""
    from helpers import random_lora

    root = tmp_path_factory.mktemp("project")
    shutil.copytree(tiny_model, root / "models" / "base")
    adapter = root / "outputs" / "lora"
    random_lora(tiny_model, seed=1, scale=0.5).save_pretrained(adapter)
    config = load_json(adapter / "adapter_config.json")
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "models/base"}),
                                                 encoding="utf-8")
    return root, adapter


class TestPathsAreCheckedOnDiskFirst:
    """Issue 22, item 7: a relative base recorded by an adapter, a recipe's base_model not converted yet and a
    missing metric model folder went to the hub as ids (tracebacks, tens of seconds of retries, a message
    telling to pass the option that was passed); select-checkpoint found missing BERTScore weights only
    after generating."""

    def test_an_adapters_relative_base_resolves_from_the_training_folder(self, adapter_on_relative_base, tmp_path,
                                                                          monkeypatch):
        root, adapter = adapter_on_relative_base
        monkeypatch.chdir(root)
        result = tools_cli(*INFER, "--ckpt", adapter, "--input", DEV, "--output", tmp_path / "a.json")
        assert result.exit_code == 0, result.output
        monkeypatch.chdir(tmp_path)  # elsewhere: one line, naming the file, the value and the way out
        message = one_line_error(tools_cli(*INFER, "--ckpt", adapter, "--input", DEV, "--output", tmp_path / "b.json"))
        assert message == (f"Error: {adapter / 'adapter_config.json'}: its base model (base_model_name_or_path) "
                           f"models/base: no such directory, relative to {tmp_path} (run from the folder training "
                           "ran in, or pass --base-model DIR)")
        result = tools_cli(*INFER, "--ckpt", adapter, "--base-model", root / "models" / "base", "--input", DEV,
                           "--output", tmp_path / "c.json")
        assert result.exit_code == 0, result.output
        assert load_json(tmp_path / "c.json") == load_json(tmp_path / "a.json")

    @pytest.mark.parametrize("args, source", [
        (["infer", "--ckpt", "models/EXAONE-3.0-7.8B-Instruct-llama", "--input", DEV, "--output", "r.json"], "--ckpt"),
        (["infer", "--ckpt", "MODEL", "--base-model", "models/base", "--input", DEV, "--output", "r.json"],
         "--base-model"),
        (["build-sft-data", "--input", TRAIN, "--output", "o.jsonl", "--tokenizer", "models/base"], "--tokenizer"),
        (["build-sft-data", "--input", TRAIN, "--output", "o.jsonl", "--recipe", REPO / "recipes" / "exaone_lora.yml"],
         f"the base_model of {REPO / 'recipes' / 'exaone_lora.yml'}"),
        (["build-dpo-data", "--input", TRAIN, "--candidates", "CANDIDATES", "--output", "o.jsonl", "--recipe",
          REPO / "recipes" / "exaone_lora.yml"], f"the base_model of {REPO / 'recipes' / 'exaone_lora.yml'}"),
        (["score", "--predictions", DEV, "--references", DEV, "--bertscore-model", "models/bert"],
         "bertscore: --bertscore-model"),
        (["score", "--predictions", DEV, "--references", DEV, "--metrics", "bleurt", "--bleurt-model", "models/BLEURT-20"],
         "bleurt: --bleurt-model"),
        (["cpu-overlay", REPO / "recipes" / "exaone_lora.yml", "--base-model", "models/tiny", "--train-data", TRAIN,
          "--output-dir", "out", "--config-out", "c.yml"], "--base-model"),
    ])
    def test_a_missing_local_path_is_named_with_its_source(self, tiny_model, tmp_path, monkeypatch, args, source):
        monkeypatch.chdir(tmp_path)
        candidates = candidates_file(tmp_path, load_json(TRAIN))
        args = [{"MODEL": tiny_model, "CANDIDATES": candidates}.get(arg, arg) for arg in args]
        message = one_line_error(tools_cli(*args))
        assert message.startswith(f"Error: {source} models/") and ": no such directory, relative to " in message
        assert "convert-exaone" in message or "huggingface-cli download" in message
        assert sorted(listing(tmp_path)) == ["candidates.jsonl"]

    def test_select_checkpoint_checks_metric_weights_before_generating(self, full_run, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        before = listing(full_run)
        result = tools_cli("select-checkpoint", "--run", full_run, "--input", DEV, "--no-progress", "--metric", "official",
                           "--bertscore-model", "models/bert-base-multilingual-cased")
        assert result.exit_code == 1 and "generating" not in result.output, result.output
        assert result.output.strip().splitlines() == [
            f"Error: bertscore: --bertscore-model models/bert-base-multilingual-cased: no such directory, relative to "
            f"{tmp_path} (on a connected machine: huggingface-cli download bert-base-multilingual-cased --local-dir DIR)"]
        assert listing(full_run) == before  # nothing written into the run
