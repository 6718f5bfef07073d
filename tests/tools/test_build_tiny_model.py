"""`tools build-tiny-model`: both layouts, the hidden sizes a model runs with, its files' modes, a full disk, and
never deleting a folder it did not make."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from helpers import TRAIN, listing, load_json, on_mounted, one_line_error, snapshot, tools_cli, tools_cli as tools


def test_the_hidden_sizes_allowed_are_those_a_model_runs_with():
    """The rule of `build-tiny-model --hidden-size` against transformers itself: 4 heads, 2 key/value heads."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from exaone.tiny import HEADS, KV_HEADS, hidden_size_problem

    for hidden in (8, 9, 10, 12, 16, 20, 24):
        try:
            config = LlamaConfig(vocab_size=16, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                                 num_attention_heads=HEADS, num_key_value_heads=KV_HEADS)
            LlamaForCausalLM(config)(torch.tensor([[1, 2, 3]]))
            runs = True
        except Exception:  # noqa: BLE001 - any failure: the width does not work
            runs = False
        assert (hidden_size_problem(hidden) is None) == runs, hidden


class TestSideFilesNeverDestroyInputs:
    """Issue 22, item 3: an input named OUT.lock was deleted by `infer --output OUT`, one named
    OUT.partial.jsonl lost its last byte; --output inside the checkpoint or tokenizer folder replaced a file
    there; `build-tiny-model --output-dir D --input D/mydata.json` deleted its own input and all of D."""

    def test_build_tiny_model_never_deletes_its_data_or_a_foreign_folder(self, tmp_path):
        folder = tmp_path / "D"
        folder.mkdir()
        data = folder / "mydata.json"
        shutil.copy(TRAIN, data)
        (folder / "notes.txt").write_text("mine")
        before = snapshot(folder)
        message = one_line_error(tools_cli("build-tiny-model", "--output-dir", folder, "--input", data))
        assert f"--input {data} is inside {folder}" in message
        message = one_line_error(tools_cli("build-tiny-model", "--output-dir", folder, "--input", TRAIN))
        assert "holds files `tools build-tiny-model` did not write" in message
        assert snapshot(folder) == before and listing(tmp_path) == ["D", "D/mydata.json", "D/notes.txt"]
        # Its own earlier build is replaced, as the help says.
        for _ in range(2):
            assert tools_cli("build-tiny-model", "--output-dir", tmp_path / "tiny", "--input", TRAIN).exit_code == 0


# --------------------------------------------------------------------------- 8. build-tiny-model's file modes


class TestBuildTinyModelFiles:
    """Issue 22, item 8: build-tiny-model wrote its weights 0600 (converted shards are 0644)."""

    @pytest.mark.parametrize("layout", ["exaone", "llama"])
    def test_weights_get_the_umask_mode_like_every_other_file(self, tmp_path, layout):
        previous = os.umask(0o022)
        try:
            result = tools_cli("build-tiny-model", "--layout", layout, "--output-dir", tmp_path / "tiny")
        finally:
            os.umask(previous)
        assert result.exit_code == 0, result.output
        modes = {path.name: oct(path.stat().st_mode & 0o777) for path in (tmp_path / "tiny").iterdir()}
        assert set(modes.values()) == {"0o644"}, modes

    def test_a_full_disk_is_one_line_and_leaves_nothing(self, tmp_path, tiny_model):
        from exaone.tiny import exaone_layout_sibling

        disk = tmp_path / "disk"
        disk.mkdir()
        # Room for the EXAONE-layout original, not for the converted copy as well.
        room = sum(path.stat().st_size for path in exaone_layout_sibling(tiny_model).iterdir()) + 100_000
        result, left = on_mounted(f"size={room}", disk, "build-tiny-model", "--output-dir", disk / "tiny")
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            f"Error: cannot write {disk / 'tiny'}: No space left on device (the disk is full; free some space or "
            "write elsewhere)"], result.stderr
        assert left == []


def test_build_tiny_model_command_writes_both_layouts(tmp_path):
    result = tools("build-tiny-model", "--layout", "exaone", "--shape", "tied", "--output-dir", tmp_path / "hub")
    assert result.exit_code == 0, result.output
    config = load_json(tmp_path / "hub" / "config.json")
    assert config["model_type"] == "exaone" and config["tie_word_embeddings"] is True
    assert config["rope_scaling"]["rope_type"] == "llama3" and config["max_position_embeddings"] == 32768
    result = tools("build-tiny-model", "--output-dir", tmp_path / "llama")
    assert result.exit_code == 0, result.output
    assert load_json(tmp_path / "llama" / "config.json")["model_type"] == "llama"
    assert load_json(tmp_path / "llama-exaone-layout" / "config.json")["model_type"] == "exaone"
