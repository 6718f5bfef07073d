"""common/tokenizer.py: a checkpoint without tokenizer files, or a tokenizer path that is not there, is one line
naming it."""

from __future__ import annotations

import shutil

from helpers import TEST, TRAIN, one_line_error, tools_cli


def test_a_checkpoint_without_tokenizer_files_is_named(tiny_model, tmp_path):
    bare = tmp_path / "weights-only"
    shutil.copytree(tiny_model, bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        (bare / name).unlink(missing_ok=True)
    message = one_line_error(tools_cli("infer", "--ckpt", bare, "--input", TEST, "--output", tmp_path / "r.json"))
    assert f"tokenizer {bare}: the directory holds no tokenizer files" in message and message.endswith("instead")


def test_a_missing_tokenizer_path_says_so(tmp_path):
    message = one_line_error(tools_cli("build-sft-data", "--input", TRAIN, "--output", tmp_path / "o.jsonl",
                                 "--tokenizer", "/no/such/dir", "--max-seq-len", 100))
    assert message.startswith("Error: --tokenizer /no/such/dir: no such directory (`tools convert-exaone")
