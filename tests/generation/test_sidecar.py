"""generation/sidecar.py: the results sidecar and the output's lock. A resumed run never mixes models or loses
a result (kill -9, Ctrl-C between the append and the bookkeeping, a second run on the same output), bad or
duplicate rows are regenerated as said, and inputs named like side files are never touched. Each case is met as a
user meets it: through `tools infer` on files on disk."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from generation.hf import HFEngine
from generation.sidecar import SIDECAR_SUFFIX
from helpers import (
    DEV,
    INFER,
    TEST,
    TRAIN,
    killed,
    killed_before,
    lines_in,
    listing,
    load_json,
    lock_held_elsewhere,
    many_dialogues,
    one_line_error,
    snapshot,
    tools_cli,
)


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


class TestSideFilesNeverDestroyInputs:
    """Issue 22, item 3: an input named OUT.lock was deleted by `infer --output OUT`, one named
    OUT.partial.jsonl lost its last byte; --output inside the checkpoint or tokenizer folder replaced a file
    there; `build-tiny-model --output-dir D --input D/mydata.json` deleted its own input and all of D."""

    @pytest.mark.parametrize("suffix, what", [(".lock", "its lock file"), (".partial.jsonl", "its results sidecar")])
    def test_an_input_named_like_a_side_file_is_refused(self, tiny_model, tmp_path, suffix, what):
        data = tmp_path / f"result.json{suffix}"
        data.write_bytes(DEV.read_bytes()[:-1])  # no final newline: a torn sidecar tail would be cut
        before = snapshot(data)
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", data, "--output",
                                           tmp_path / "result.json"))
        assert f"{what} {data} is the same file as --input" in message
        assert snapshot(data) == before and listing(tmp_path) == [data.name]

    @pytest.mark.parametrize("content", [b'{"not": "a header"}\n{"torn', b"no line break at all"])
    def test_a_foreign_file_at_the_sidecar_path_is_not_touched(self, tiny_model, tmp_path, content):
        sidecar = tmp_path / "result.json.partial.jsonl"
        sidecar.write_bytes(content)
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", DEV, "--output",
                                           tmp_path / "result.json"))
        assert "is not a results sidecar" in message
        assert sidecar.read_bytes() == content


# --------------------------------------------------------------------------- 6. resume bookkeeping


def summary_line(output: str, start: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(start))


class TestResumeBookkeeping:
    """Issue 22, item 6: a resumed run said "prompts truncated: 0" where a clean run said 7; a sidecar with no
    results refused the corrected rerun; select-checkpoint suggested a --restart it did not have; a folder at
    the sidecar path and a trainer_state.json that is a list were tracebacks."""

    def test_a_resumed_run_reports_what_a_clean_run_does(self, tiny_model, tmp_path, write_nikl):
        data = many_dialogues(write_nikl, copies=3)
        common = [*INFER, "--ckpt", tiny_model, "--input", data, "--batch-size", 1, "--max-prompt-tokens", 150]
        clean = tools_cli(*common, "--output", tmp_path / "clean.json")
        assert clean.exit_code == 0, clean.output
        out = tmp_path / "resumed.json"
        killed([*common, "--output", out], lambda: lines_in(Path(f"{out}.partial.jsonl")) >= 5)
        resumed = tools_cli(*common, "--output", out)
        assert resumed.exit_code == 0 and "resumed from" in resumed.output, resumed.output
        line = summary_line(clean.output, "prompts truncated: ")
        assert not line.startswith("prompts truncated: 0 ") and summary_line(resumed.output, "prompts truncated: ") == line
        assert load_json(out) == load_json(tmp_path / "clean.json")

    def test_a_sidecar_without_results_is_replaced_without_restart(self, tiny_model, tmp_path):
        out = tmp_path / "result.json"
        killed_before("generation.hf:HFEngine.generate", 1, *INFER, "--ckpt", tiny_model, "--input", DEV,
                      "--output", out)
        assert Path(f"{out}.partial.jsonl").read_text(encoding="utf-8").count("\n") == 1  # the header only
        result = tools_cli(*INFER, "--max-new-tokens", 7, "--ckpt", tiny_model, "--input", DEV, "--output", out)
        assert result.exit_code == 0 and "resumed" not in result.output, result.output
        assert listing(tmp_path) == ["result.json"]

    def test_a_directory_at_the_sidecar_or_lock_path_is_one_line(self, tiny_model, tmp_path):
        for name, problem in (("result.json.partial.jsonl", "is a directory, where this run keeps its results sidecar"),
                              ("result.json.lock", "Is a directory")):
            (tmp_path / name).mkdir()
            message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", DEV, "--output",
                                               tmp_path / "result.json"))
            assert str(tmp_path / name) in message and problem in message
            (tmp_path / name).rmdir()


class TestMoreWaysIn:
    """Faults beyond the issue's list, held to the same rules: a full or read-only disk under every command
    that writes, Ctrl-C during select-checkpoint, a merged copy of a killed vLLM run."""

    def test_a_sidecar_from_another_version_is_named_as_such(self, tiny_model, tmp_path, write_nikl):
        data = many_dialogues(write_nikl, copies=2)
        out = tmp_path / "result.json"
        sidecar = Path(f"{out}.partial.jsonl")
        args = [*INFER, "--ckpt", tiny_model, "--input", data, "--output", out, "--batch-size", 1]
        killed(args, lambda: lines_in(sidecar) >= 3)
        header, *rows = sidecar.read_text(encoding="utf-8").splitlines()
        settings = json.loads(header)["header"]
        older = {key: value for key, value in settings.items() if key != "weights"} | {"format": 1}
        sidecar.write_text("\n".join([json.dumps({"header": older}), *rows]) + "\n", encoding="utf-8")
        before = snapshot(sidecar)
        message = one_line_error(tools_cli(*args))
        assert "format (recorded by the run that wrote it, not by this version)" in message
        assert "weights (the run that wrote it did not record it: another version?)" in message
        assert "--restart" in message and snapshot(sidecar) == before
        assert tools_cli(*args, "--restart").exit_code == 0
        assert listing(tmp_path) == ["many.json", "result.json"]


# --------------------------------------------------------------------------- one output, one lock


def test_a_held_lock_refuses_the_same_process_too(tmp_path):
    """A run takes its output's lock once; nothing holds it twice, so a second taker — in this process as in any
    other — is refused until the first lets go."""
    from common.errors import UserError
    from generation.sidecar import output_lock

    out = tmp_path / "result.json"
    with output_lock(out):
        with pytest.raises(UserError, match=f"{out} is being written by another run"):
            with output_lock(out):
                pass
        assert Path(f"{out}.lock").exists()
    with output_lock(out):  # released
        pass
    assert not Path(f"{out}.lock").exists()


# --------------------------------------------------------------------------- the results sidecar


def test_the_sidecar_is_kept_when_its_file_holds_a_result(tmp_path):
    from generation.sidecar import Sidecar

    sidecar = Sidecar(tmp_path / "result.json", {"model": "m"})
    sidecar.open()
    sidecar.remove_unless_it_holds_results()  # a header and no result: nothing to resume from
    assert not sidecar.path.exists()
    sidecar.open()
    sidecar.append([{"id": "a", "output": "요약"}])
    sidecar.remove_unless_it_holds_results()
    assert sidecar.path.exists()
    with open(sidecar.path, "ab") as file:
        file.write(b'{"id": "b", "outp')  # a line torn by a kill is no result …
    assert sidecar.holds_results()  # … but the complete one before it is
    fresh = Sidecar(tmp_path / "other.json", {"model": "m"})
    fresh.open()
    with open(fresh.path, "ab") as file:
        file.write(b'{"id": "b", "outp')
    assert not fresh.holds_results()


def test_ctrl_c_between_the_append_and_the_bookkeeping_keeps_the_result(tmp_path, tiny_model, monkeypatch):
    """The race that made the Ctrl-C test flaky: the batch is in the file, the run has not noted it yet."""
    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import PromptBuilder
    from generation.decoding import Decoding
    from generation.checkpoints import resolve_checkpoint
    from generation.loader import load_engine
    from generation.options import InferenceOptions
    from generation.runner import run_to_file
    from generation.sidecar import Sidecar

    real_append = Sidecar.append

    def append_then_interrupt(self, rows):
        real_append(self, rows)
        raise KeyboardInterrupt

    options = InferenceOptions(device="cpu")
    engine = load_engine(resolve_checkpoint(tiny_model), Decoding(max_new_tokens=2), options)
    examples = load_nikl(TEST)
    builder = PromptBuilder(tokenizer=engine.tokenizer)
    output = tmp_path / "result.json"
    monkeypatch.setattr(Sidecar, "append", append_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_to_file(engine, examples, builder, output, limit=options.batch_limit("cpu"), progress=False)
    monkeypatch.undo()
    report = run_to_file(engine, examples, builder, output, limit=options.batch_limit("cpu"), progress=False)
    assert report.resumed >= 1 and len(load_json(output)) == len(examples)


@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    """A checkpoint folder of the user's own, to re-train (change) in place."""
    path = tmp_path / "outputs" / "run"
    shutil.copytree(tiny_model, path)
    return path


# --------------------------------------------------------------------------- resume never mixes models


def interrupted_run(monkeypatch, model: Path, data: Path, out: Path) -> None:
    """A run killed (Ctrl-C) after its first batch: the sidecar holds some results."""
    generate = HFEngine.generate
    calls = []

    def once(self, jobs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return generate(self, jobs)

    monkeypatch.setattr(HFEngine, "generate", once)
    result = tools_cli(*INFER, "--ckpt", model, "--input", data, "--output", out, "--batch-size", 2)
    assert result.exit_code == 130, result.output
    monkeypatch.setattr(HFEngine, "generate", generate)


def test_a_retrained_checkpoint_is_refused_naming_what_changed(monkeypatch, tmp_path, model_copy):
    out = tmp_path / "result.json"
    interrupted_run(monkeypatch, model_copy, TRAIN, out)
    sidecar = Path(str(out) + SIDECAR_SUFFIX)
    assert len(sidecar.read_text(encoding="utf-8").splitlines()) == 1 + 2
    # "Re-train" into the same folder: new weights, same path.
    weights = sorted(model_copy.glob("*.safetensors"))[-1]
    weights.write_bytes(weights.read_bytes())
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 10**9))
    message = one_line_error(tools_cli(*INFER, "--ckpt", model_copy, "--input", TRAIN, "--output", out))
    assert f"different settings (weights changed: model.{weights.name})" in message and "--restart" in message
    assert not out.exists() and sidecar.exists()
    result = tools_cli(*INFER, "--ckpt", model_copy, "--input", TRAIN, "--output", out, "--restart")
    assert result.exit_code == 0 and "resumed" not in result.output


def test_bad_sidecar_rows_are_reported_and_regenerated(monkeypatch, tmp_path, tiny_model):
    out = tmp_path / "result.json"
    interrupted_run(monkeypatch, tiny_model, TRAIN, out)
    sidecar = Path(str(out) + SIDECAR_SUFFIX)
    header, *good = sidecar.read_bytes().splitlines()
    ids = [item["id"] for item in load_json(TRAIN)]
    kept = json.loads(good[0])
    kept["output"] = "FROM-SIDECAR"
    bad = [json.dumps({"id": ids[5], "output": None}).encode(), json.dumps({"id": ids[6], "output": 42}).encode(),
           json.dumps({"id": ids[7]}).encode(), b'{"id": "' + ids[4].encode() + b'", "output": "\xff\xfe"}',
           b"%% not json %%", json.dumps({"id": ids[3], "candidates": ["a"]}).encode()]
    sidecar.write_bytes(b"\n".join([header, json.dumps(kept).encode(), *bad]) + b"\n")
    result = tools_cli(*INFER, "--ckpt", tiny_model, "--input", TRAIN, "--output", out)
    assert result.exit_code == 0, result.output
    for line, problem in [(3, "'output' is not a string"), (4, "'output' is not a string"),
                          (5, "'output' is not a string"), (6, "not UTF-8 text"), (7, "not JSON"),
                          (8, "'output' is not a string")]:
        assert f"{sidecar}: line {line}: {problem}" in result.output
    assert result.output.count("that example is generated again") == 6
    assert "(1 resumed from" in result.output
    outputs = {item["id"]: item["output"] for item in load_json(out)}
    assert outputs[kept["id"]] == "FROM-SIDECAR"
    assert all(isinstance(text, str) and text != "FROM-SIDECAR" for key, text in outputs.items() if key != kept["id"])


def test_a_garbage_header_still_needs_restart(tmp_path, tiny_model):
    out = tmp_path / "result.json"
    Path(str(out) + SIDECAR_SUFFIX).write_text("not a header\n", encoding="utf-8")
    message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", TEST, "--output", out))
    assert "not a results sidecar" in message and "--restart" in message


def test_a_second_run_on_the_same_output_stops_at_once(tmp_path, tiny_model):
    out = tmp_path / "result.json"
    with lock_held_elsewhere(Path(str(out) + ".lock")):
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", TEST, "--output", out))
        assert f"{out} is being written by another run" in message
    assert tools_cli(*INFER, "--ckpt", tiny_model, "--input", TEST, "--output", out).exit_code == 0  # free again
    assert not Path(str(out) + ".lock").exists()
