"""A newcomer's first hour: quiet commands, help for every option, and one line for every plausible mistake."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from common.env import offline_env
from helpers import DEV, TEST, TRAIN, load_json, one_line_error, tools_cli
from tools.cli import cli


def test_infer_prints_what_it_loaded_and_no_library_noise(tiny_model, tmp_path):
    """The real command in its own process (library warnings fire at import time): only our own lines."""
    script = Path(sys.executable).with_name("tools")
    out = tmp_path / "result.json"
    result = subprocess.run([str(script), "infer", "--no-progress", "--threads", "1", "--ckpt", str(tiny_model),
                             "--input", str(TEST), "--output", str(out), "--max-new-tokens", "4"],
                            env=offline_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = (result.stderr + result.stdout).strip().splitlines()
    assert lines[0] == f"loaded model {tiny_model}, no adapter, float32 on cpu, hf backend"
    assert [line.split(":")[0].split(" ")[0] for line in lines[1:]] == ["wrote", "examples", "generation", "prompts"]


def test_every_option_of_every_command_says_what_it_does():
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert (param.help or "").strip(), f"tools {name} {param.opts[0]} has no help text"
        assert "Example" in (command.help or ""), f"tools {name} has no usage example"


@pytest.mark.parametrize("command, dest, args", [
    ("score", "input_path", ["--predictions", DEV]),
    ("infer", "input_path", ["--ckpt", "m", "--output", "o.json"]),
    ("build-tiny-model", "input_paths", ["--output-dir", "m"]),
])
def test_references_is_the_other_name_of_input(command, dest, args):
    """The task file is --input in every command; --references (the file of reference summaries, as `score` and
    `compare` call it) is its other name, listed beside it in --help."""
    context = cli.commands[command].make_context(command, [*args, "--references", str(DEV)])
    assert context.params[dest] in (DEV, (DEV,))
    assert re.search(r"--input, --references (FILE|PATH)", tools_cli(command, "--help").output)


@pytest.mark.parametrize("command, name, args", [
    ("build-dpo-data", "--data", ["--candidates", DEV, "--output", "o.jsonl"]),
    ("select-checkpoint", "--dev", ["--run", "r"]),
    ("build-tiny-model", "--data", ["--output-dir", "m"]),
    ("build-tiny-model", "--output", []),
    ("convert-exaone", "--output", ["--model", "m"]),
    ("build-synthetic-data", "--output", []),
])
def test_names_before_one_per_kind_are_gone(command, name, args):
    """One name per kind of argument: the task file is --input, a folder to write is --output-dir (--output is
    always a file); the names some commands had before are unknown options."""
    with pytest.raises(click.NoSuchOption) as refused:
        cli.commands[command].make_context(command, [*args, name, str(DEV)])
    assert refused.value.option_name == name


@pytest.mark.parametrize("args, expected", [
    (["--device", "gpu"], "--device gpu: not a device; use auto, cpu, cuda or cuda:N"),
    (["--output", "{tmp}/o.jsonl"], "the submission is one JSON list, not JSONL; name the file .json"),
    (["--output", "{tmp}/o.json", "--num-candidates", "2"], "candidates are JSONL, one row per dialogue"),
])
def test_infer_mistakes(tiny_model, tmp_path, args, expected):
    args = [arg.format(tmp=tmp_path) for arg in args]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "r.json")]
    message = one_line_error(tools_cli("infer", "--ckpt", tiny_model, "--input", TEST, *args))
    assert expected in message
    assert not any(tmp_path.iterdir())  # nothing written


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


def test_jsonl_where_a_task_file_belongs_is_named(tmp_path):
    rows = tmp_path / "train.jsonl"
    rows.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in load_json(TRAIN)), encoding="utf-8")
    message = one_line_error(tools_cli("build-sft-data", "--input", rows, "--output", tmp_path / "o.jsonl"))
    assert "JSONL (one JSON object per line), not a NIKL task file (one JSON list of examples)" in message


def test_a_submission_where_candidates_belong_is_named(tmp_path):
    message = one_line_error(tools_cli("rerank", "--candidates", DEV, "--input", DEV, "--output", tmp_path / "r.json"))
    assert f"{DEV}: a JSON list, not JSONL" in message


def test_candidates_that_are_not_utf8_name_the_file_and_line(tmp_path):
    bad = tmp_path / "c.jsonl"
    bad.write_bytes(json.dumps({"id": load_json(DEV)[0]["id"], "candidates": ["a"]}).encode() + b'\n{"id": "\xff"}\n')
    message = one_line_error(tools_cli("rerank", "--candidates", bad, "--input", DEV, "--output", tmp_path / "r.json"))
    assert f"{bad}: line 2: not UTF-8 text" in message


def test_an_unwritable_output_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("x")
    message = one_line_error(tools_cli("build-sft-data", "--input", TRAIN, "--output", tmp_path / "a-file" / "o.jsonl"))
    assert f"cannot write {tmp_path / 'a-file' / 'o.jsonl'}" in message
