"""Fault injection, as a user meets each fault: through the `tools` commands, on files on disk. One section per
item of issue 22 ("no traceback, no lost file, no wrong result"); each checks the one-line message, that every
input is byte-identical afterwards, and that nothing partial or hidden is left behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.env import offline_env
from conftest import DEV, TEST, TRAIN, load_json, one_line_error, tools_cli

INFER = ["infer", "--no-progress", "--threads", "1", "--max-new-tokens", "6"]


def snapshot(*paths: Path) -> dict[Path, bytes]:
    """Every file under ``paths`` (files or folders) and its bytes, to compare before and after a command."""
    files = {}
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            files[file] = file.read_bytes()
    return files


def tools_command() -> list[str]:
    script = Path(sys.executable).with_name("tools")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]


def killed(args: list, until, timeout: float = 120) -> None:
    """Run `tools ARGS…` in a subprocess and kill -9 it as soon as ``until()`` is true."""
    process = subprocess.Popen([*tools_command(), *map(str, args)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=offline_env())
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert process.poll() is None, f"finished before it could be killed: {process.stderr.read().decode()}"
            assert time.monotonic() < deadline, "never reached the point to kill it at"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def many_dialogues(write_nikl, copies: int = 8) -> Path:
    """The bundled dialogues, ``copies`` times over under new ids: a run long enough to be killed midway."""
    return write_nikl([{**item, "id": f"{item['id']}-{copy}"} for copy in range(copies)
                       for path in (TRAIN, DEV, TEST) for item in load_json(path)], "many.json")


def listing(folder: Path) -> list[str]:
    """Every name under ``folder``, hidden ones included."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# --------------------------------------------------------------------------- 1. truncation at tiny budgets


def empty_and_answer_tokens(tokenizer_dir: Path, item: dict) -> int:
    """Tokens of a training row with no conversation at all: the prompt's frame plus the answer."""
    from dataset_builders.nikl import parse_example
    from dataset_builders.prompt import CONVERSATION_HEADER, PromptBuilder, question_text
    from dataset_builders.tokenizer import load_tokenizer

    builder = PromptBuilder(tokenizer=load_tokenizer(str(tokenizer_dir)))
    example = parse_example(item, 0)
    frame = builder.render(builder.messages(CONVERSATION_HEADER + question_text(example.subject_keyword)))
    return len(frame) + builder.completion_tokens(builder.build(example), example.output)


def has_dialogue_text(user_message: str) -> bool:
    conversation = user_message.split("[Conversation]\n", 1)[1].split("\n\n[Question]", 1)[0]
    return any(line.split(": ", 1)[-1].strip() for line in conversation.splitlines() if ": " in line)


class TestTruncationAtTinyBudgets:
    """Issue 22, item 1: a budget the size of the empty-conversation prompt crashed; one token more wrote a row
    whose conversation was a cut-off speaker label; only 10 kept-out ids were named."""

    @pytest.mark.parametrize("extra", [0, 1, 2])
    def test_no_row_without_dialogue_text_and_no_crash(self, tiny_model, tmp_path, write_nikl, extra):
        items = load_json(TRAIN)
        tight = items[1]
        max_seq_len = empty_and_answer_tokens(tiny_model, tight) + extra
        data = write_nikl(items)
        before = snapshot(data)
        out = tmp_path / "sft.jsonl"
        result = tools_cli("build-sft-data", "--input", data, "--output", out, "--tokenizer", tiny_model,
                           "--max-seq-len", max_seq_len)
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert all(has_dialogue_text(row["messages"][1]["content"]) for row in rows)
        assert tight["id"] not in {row["id"] for row in rows}
        kept_out = Path(f"{out}.kept-out.txt").read_text(encoding="utf-8").split()
        assert tight["id"] in kept_out and f"examples kept out: {len(kept_out)} " in result.output
        assert len(rows) + len(kept_out) == len(items)
        assert snapshot(data) == before

    def test_every_kept_out_id_is_named_with_the_count(self, tiny_model, tmp_path, write_nikl):
        short = load_json(TRAIN)[0]
        items = [{**item, "id": f"{item['id']}-{copy}", "output": "아주 긴 요약입니다. " * 40}
                 for copy in range(5) for item in load_json(TRAIN)]
        items.append(short)  # fits: the others are kept out
        out = tmp_path / "sft.jsonl"
        result = tools_cli("build-sft-data", "--input", write_nikl(items), "--output", out, "--tokenizer", tiny_model,
                           "--max-seq-len", empty_and_answer_tokens(tiny_model, short) + 30)
        assert result.exit_code == 0, result.output
        kept_out = [item["id"] for item in items[:-1]]
        assert f"examples kept out: {len(kept_out)} " in result.output
        assert f"and {len(kept_out) - 10} more; all {len(kept_out)} listed in" in result.output
        assert Path(f"{out}.kept-out.txt").read_text(encoding="utf-8").split() == kept_out
        # A later run that keeps nothing out leaves no stale list behind.
        assert tools_cli("build-sft-data", "--input", write_nikl(items), "--output", out).exit_code == 0
        assert not Path(f"{out}.kept-out.txt").exists()

    def test_nothing_written_when_every_row_is_kept_out(self, tiny_model, tmp_path, write_nikl):
        message = one_line_error(tools_cli("build-sft-data", "--input", write_nikl(load_json(TRAIN)), "--output",
                                           tmp_path / "sft.jsonl", "--tokenizer", tiny_model, "--max-seq-len", 40))
        assert "were kept out" in message and "raise --max-seq-len" in message
        assert listing(tmp_path) == ["data.json"]

    def test_infer_names_the_dialogues_and_the_budget_they_need(self, tiny_model, tmp_path, write_nikl):
        items = load_json(DEV)
        data = write_nikl(items)
        frame = empty_and_answer_tokens(tiny_model, {**items[0], "output": ""})
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", data, "--output",
                                           tmp_path / "out.json", "--max-prompt-tokens", frame))
        assert "leaves no room for any dialogue text" in message and repr(items[0]["id"]) in message
        assert "they need at least" in message and "--max-prompt-tokens" in message
        assert listing(tmp_path) == ["data.json"]


# --------------------------------------------------------------------------- 2. duplicate ids in a sidecar


class TestDuplicateSidecarRows:
    """Issue 22, item 2: a second row for an id was reported as "generated again", but the first (hand-edited)
    copy went into the submission."""

    def test_the_id_is_generated_again_as_said(self, tiny_model, tmp_path, write_nikl):
        data = many_dialogues(write_nikl)
        out = tmp_path / "result.json"
        sidecar = Path(f"{out}.partial.jsonl")
        args = [*INFER, "--ckpt", tiny_model, "--input", data, "--output", out, "--batch-size", 1]
        killed(args, lambda: lines_in(sidecar) >= 4)
        header, first, second, *rest = sidecar.read_text(encoding="utf-8").splitlines()
        row = json.loads(second)
        edited = {**row, "output": "HAND EDITED"}
        sidecar.write_text("\n".join([header, first, json.dumps(edited, ensure_ascii=False), *rest, second]) + "\n",
                           encoding="utf-8")
        result = tools_cli(*args)
        assert result.exit_code == 0, result.output
        assert f"a second result for id {row['id']!r} (line 3 has one too); neither copy is kept; that example is " \
               "generated again" in result.output
        outputs = {item["id"]: item["output"] for item in load_json(out)}
        assert outputs[row["id"]] == row["output"] != "HAND EDITED"  # regenerated (greedy: the same text)
        assert listing(tmp_path) == ["many.json", "result.json"]


# --------------------------------------------------------------------------- 3. side files and model folders


class TestSideFilesNeverDestroyInputs:
    """Issue 22, item 3: an input named OUT.lock was deleted by `infer --output OUT`, one named
    OUT.partial.jsonl lost its last byte; --output inside the checkpoint or tokenizer folder replaced a file
    there; `build-tiny-model --output D --data D/mydata.json` deleted its own input and all of D."""

    @pytest.mark.parametrize("suffix, what", [(".lock", "its lock file"), (".partial.jsonl", "its results sidecar")])
    def test_an_input_named_like_a_side_file_is_refused(self, tiny_model, tmp_path, suffix, what):
        data = tmp_path / f"result.json{suffix}"
        data.write_bytes(DEV.read_bytes()[:-1])  # no final newline: a torn sidecar tail would be cut
        before = snapshot(data)
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", data, "--output",
                                           tmp_path / "result.json"))
        assert f"{what} {data} is the same file as --input" in message
        assert snapshot(data) == before and listing(tmp_path) == [data.name]

    def test_a_foreign_file_at_the_sidecar_path_is_not_touched(self, tiny_model, tmp_path):
        sidecar = tmp_path / "result.json.partial.jsonl"
        sidecar.write_bytes(b'{"not": "a header"}\n{"torn')
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", DEV, "--output",
                                           tmp_path / "result.json"))
        assert "is not a results sidecar" in message
        assert sidecar.read_bytes() == b'{"not": "a header"}\n{"torn'

    @pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "predictions.json"])
    def test_infer_never_writes_into_the_checkpoint_folder(self, tiny_model, tmp_path, name):
        model = tmp_path / "model"
        shutil.copytree(tiny_model, model)
        before = snapshot(model)
        message = one_line_error(tools_cli(*INFER, "--ckpt", model, "--input", DEV, "--output", model / name))
        assert f"--output {model / name} is inside --ckpt {model}" in message
        assert snapshot(model) == before and listing(model) == sorted(path.name for path in before)

    def test_data_builders_never_write_into_the_tokenizer_folder(self, tiny_model, tmp_path):
        model = tmp_path / "model"
        shutil.copytree(tiny_model, model)
        before = snapshot(model)
        message = one_line_error(tools_cli("build-sft-data", "--input", TRAIN, "--tokenizer", model, "--output",
                                           model / "tokenizer.json"))
        assert f"is inside --tokenizer {model}" in message
        assert snapshot(model) == before

    def test_build_tiny_model_never_deletes_its_data_or_a_foreign_folder(self, tmp_path):
        folder = tmp_path / "D"
        folder.mkdir()
        data = folder / "mydata.json"
        shutil.copy(TRAIN, data)
        (folder / "notes.txt").write_text("mine")
        before = snapshot(folder)
        message = one_line_error(tools_cli("build-tiny-model", "--output", folder, "--data", data))
        assert f"--data {data} is inside {folder}" in message
        message = one_line_error(tools_cli("build-tiny-model", "--output", folder, "--data", TRAIN))
        assert "holds files `tools build-tiny-model` did not write" in message
        assert snapshot(folder) == before and listing(tmp_path) == ["D", "D/mydata.json", "D/notes.txt"]
        # Its own earlier build is replaced, as the help says.
        for _ in range(2):
            assert tools_cli("build-tiny-model", "--output", tmp_path / "tiny", "--data", TRAIN).exit_code == 0
