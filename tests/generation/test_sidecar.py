"""Fault injection, as a user meets each fault: through the `tools` commands, on files on disk. One section per
item of issue 22 ("no traceback, no lost file, no wrong result"); each checks the one-line message, that every
input is byte-identical afterwards, and that nothing partial or hidden is left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.env import offline_env
from helpers import DEV, REPO, TEST, TRAIN, load_json, one_line_error, tools_cli

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


# Runs `tools ARGS…` with one function wrapped so that the process kills itself (SIGKILL: no handler, no
# cleanup) just before the Nth call: a kill -9 at an exact point of a real run.
KILL_BEFORE = """
import importlib, os, signal, sys
where, name, nth = sys.argv[1].rsplit(".", 1)[0], sys.argv[1].rsplit(".", 1)[1], int(sys.argv[2])
parts = where.split(":")
owner = importlib.import_module(parts[0])
for attribute in parts[1:]:
    owner = getattr(owner, attribute)
original, calls = getattr(owner, name), []
def wrapper(*args, **kwargs):
    calls.append(1)
    if len(calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(owner, name, wrapper)
from tools.cli import cli
cli(sys.argv[3:])
"""


def killed_before(function: str, nth: int, *args) -> None:
    """kill -9 `tools ARGS…` just before the ``nth`` call of ``function`` (``module.name`` or
    ``module:Class.name``)."""
    env = {**offline_env(), "PYTHONPATH": f"{REPO}{':' + os.environ['PYTHONPATH'] if os.environ.get('PYTHONPATH') else ''}"}
    result = subprocess.run([sys.executable, "-c", KILL_BEFORE, function, str(nth), *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, f"not killed (exit {result.returncode}): {result.stderr[-2000:]}"


def private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


LEFT = "--- left on the disk:"


def on_mounted(options: str, folder: Path, *args, before: str = "true") -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `tools ARGS…` with a fresh tmpfs mounted on ``folder`` (``size=200k`` for a nearly full disk, ``ro``
    for a read-only one), in a private mount namespace (``unshare -rm``) that vanishes with the process:
    the disk faults of a real machine, without root and without touching the system's mounts. ``before``:
    a shell command run once it is mounted. Returns the result and what the command left on that disk
    (hidden files included)."""
    if not private_mounts_work():
        pytest.skip("needs `unshare -rm` (user and mount namespaces) to mount a small or read-only tmpfs")
    script = (f'mount -t tmpfs -o {options} tmpfs "$0" && {before} && '
              f'{{ "$@"; code=$?; echo "{LEFT}"; ls -A "$0"; exit $code; }}')
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(folder), *tools_command(), *map(str, args)],
                            capture_output=True, text=True, env=offline_env(), timeout=300)
    assert LEFT in result.stdout, result.stderr
    return result, result.stdout.split(LEFT, 1)[1].split()


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def many_dialogues(write_nikl, copies: int = 8, splits=(TRAIN, DEV, TEST)) -> Path:
    """The bundled dialogues, ``copies`` times over under new ids: a run long enough to be killed midway."""
    return write_nikl([{**item, "id": f"{item['id']}-{copy}"} for copy in range(copies)
                       for path in splits for item in load_json(path)], "many.json")


def listing(folder: Path) -> list[str]:
    """Every name under ``folder``, hidden ones included."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# --------------------------------------------------------------------------- 1. truncation at tiny budgets


def empty_and_answer_tokens(tokenizer_dir: Path, item: dict) -> int:
    """Tokens of a training row with no conversation at all: the prompt's frame plus the answer."""
    from dataset_builders.nikl import parse_example
    from dataset_builders.prompt import PromptBuilder
    from common.tokenizer import load_tokenizer

    builder = PromptBuilder(tokenizer=load_tokenizer(str(tokenizer_dir)))
    example = parse_example(item, 0)
    frame = builder.render(builder.messages([], example.subject_keyword))
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

    def test_build_dpo_data_names_the_prompts_that_lost_pairs(self, tiny_model, tmp_path):
        items = load_json(DEV)
        candidates = tmp_path / "candidates.jsonl"
        long = " ".join(item["output"] for item in load_json(TRAIN) + items)  # no room beside it for dialogue
        candidates.write_text("".join(json.dumps({"id": item["id"], "candidates": [
            long if index == 1 else "두 사람은 이야기를 했다.", "짧은 요약."]}, ensure_ascii=False) + "\n"
            for index, item in enumerate(items)), encoding="utf-8")
        out = tmp_path / "dpo.jsonl"
        result = tools_cli("build-dpo-data", "--input", DEV, "--candidates", candidates, "--output", out,
                           "--strategy", "best-vs-worst", "--tokenizer", tiny_model, "--max-seq-len", 600)
        assert result.exit_code == 0, result.output
        assert (f"prompts that lost pairs to the length limit: 1 ({items[1]['id']}; all listed in "
                f"{out}.kept-out.txt)") in result.output
        assert Path(f"{out}.kept-out.txt").read_text(encoding="utf-8") == f"{items[1]['id']}\n"

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
        message = one_line_error(tools_cli("build-tiny-model", "--output-dir", folder, "--input", data))
        assert f"--input {data} is inside {folder}" in message
        message = one_line_error(tools_cli("build-tiny-model", "--output-dir", folder, "--input", TRAIN))
        assert "holds files `tools build-tiny-model` did not write" in message
        assert snapshot(folder) == before and listing(tmp_path) == ["D", "D/mydata.json", "D/notes.txt"]
        # Its own earlier build is replaced, as the help says.
        for _ in range(2):
            assert tools_cli("build-tiny-model", "--output-dir", tmp_path / "tiny", "--input", TRAIN).exit_code == 0


# --------------------------------------------------------------------------- 4. convert-exaone and final writes


@pytest.fixture(scope="module")
def hub_checkpoint(tmp_path_factory) -> Path:
    from exaone.tiny import build_tiny_exaone

    return build_tiny_exaone(tmp_path_factory.mktemp("hub") / "EXAONE-3.0-tiny")


def rewrite_first_shard(model: Path, edit) -> None:
    """Replace the header of ``model``'s first shard by ``edit(header)`` (valid JSON, wrong content)."""
    shard = sorted(model.glob("*.safetensors"))[0]
    raw = shard.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    blob = json.dumps(edit(json.loads(raw[8:8 + length]))).encode()
    shard.write_bytes(len(blob).to_bytes(8, "little") + blob + raw[8 + length:])


def first_tensor(header: dict) -> dict:
    return header[next(name for name in header if name != "__metadata__")]


def with_entry(change):
    def edit(header):
        change(first_tensor(header))
        return header
    return edit


class TestConvertExaone:
    """Issue 22, item 4: kill -9 left .NAME.partial-PID/ forever; a symlinked --output was a traceback;
    a full or read-only disk and wrong safetensors headers or config values were tracebacks; kill -9 in
    build-sft-data's final write left a hidden .NAME.*.tmp."""

    def convert(self, model: Path, output: Path, *extra):
        return tools_cli("convert-exaone", "--model", model, "--output-dir", output, "--no-progress", *extra)

    def test_kill_9_leftovers_are_cleared_by_the_next_run(self, hub_checkpoint, tmp_path):
        output = tmp_path / "converted"
        args = ["convert-exaone", "--model", hub_checkpoint, "--output-dir", output, "--no-progress"]
        killed_before("exaone.convert.write_shard", 2, *args)  # one shard written, then kill -9
        assert [name for name in listing(tmp_path) if "/" not in name][0].startswith(".converted.partial-")
        result = tools_cli(*args)
        assert result.exit_code == 0, result.output
        assert [name for name in listing(tmp_path) if "/" not in name] == ["converted"]

    def test_kill_9_between_the_two_renames_keeps_the_previous_output(self, hub_checkpoint, tmp_path):
        output = tmp_path / "converted"
        args = ["convert-exaone", "--model", hub_checkpoint, "--output-dir", output, "--no-progress", "--force"]
        assert tools_cli(*args).exit_code == 0
        previous = snapshot(output)
        killed_before("pathlib:Path.rename", 2, *args)  # the old output moved aside, the new one not yet in place
        assert not output.exists()
        assert tools_cli(*args[:-1]).exit_code == 1  # refused without --force: the previous output is back …
        assert snapshot(output) == previous
        assert [name for name in listing(tmp_path) if "/" not in name] == ["converted"]  # … and nothing else

    def test_a_symlinked_output_is_written_through(self, hub_checkpoint, tmp_path):
        (tmp_path / "real").mkdir()
        link = tmp_path / "link"
        link.symlink_to("real", target_is_directory=True)
        for extra in ((), ("--force",)):  # into the empty folder, then replacing it
            result = self.convert(hub_checkpoint, link, *extra)
            assert result.exit_code == 0, result.output
        assert link.is_symlink() and (tmp_path / "real" / "config.json").is_file()
        assert [name for name in listing(tmp_path) if "/" not in name] == ["link", "real"]

    def test_a_file_size_limit_is_one_line(self, hub_checkpoint, tmp_path):
        import resource
        import signal as signals

        def limit():  # the kernel refuses writes past 200 kB (EFBIG), as a nearly full disk would
            signals.signal(signals.SIGXFSZ, signals.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

        output = tmp_path / "converted"
        result = subprocess.run([*tools_command(), "convert-exaone", "--model", str(hub_checkpoint), "--output-dir",
                                 str(output), "--no-progress"], preexec_fn=limit, capture_output=True, text=True,
                                env=offline_env())
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            f"Error: cannot write {output}: File too large (a file size limit (ulimit -f) stops it; raise the limit "
            "or write elsewhere)"], result.stderr
        assert listing(tmp_path) == []

    @pytest.mark.parametrize("options, problem", [
        ("size=200k", "No space left on device (the disk is full; free some space or write elsewhere)"),
        ("ro,size=1m", "Read-only file system (the file system is read-only; write elsewhere)"),
    ])
    def test_a_full_or_read_only_disk_is_one_line(self, hub_checkpoint, tmp_path, options, problem):
        disk = tmp_path / "disk"
        disk.mkdir()
        result, left = on_mounted(options, disk, "convert-exaone", "--model", hub_checkpoint, "--output-dir",
                                  disk / "converted", "--no-progress")
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            f"Error: cannot write {disk / 'converted'}: {problem}"], result.stderr
        assert left == []

    @pytest.mark.parametrize("edit, problem", [
        (lambda header: [header], "header is a JSON list, not an object"),
        (with_entry(lambda entry: entry.update(dtype="F33")), "unknown dtype 'F33'"),
        (with_entry(lambda entry: entry.update(dtype="F16")), "dtype F16 and shape"),
        (with_entry(lambda entry: entry.update(data_offsets=[*entry["data_offsets"], 0])), "is not two byte offsets"),
        (with_entry(lambda entry: entry.pop("shape")), "no shape"),
        (with_entry(lambda entry: entry.update(shape="64")), "is not a list of sizes"),
    ])
    def test_wrong_safetensors_headers_are_one_line(self, hub_checkpoint, tmp_path, edit, problem):
        model = tmp_path / "model"
        shutil.copytree(hub_checkpoint, model)
        rewrite_first_shard(model, edit)
        before = snapshot(model)
        message = one_line_error(self.convert(model, tmp_path / "out"))
        assert problem in message and "download the checkpoint again" in message
        assert snapshot(model) == before and not (tmp_path / "out").exists()

    @pytest.mark.parametrize("key", ["num_attention_heads", "hidden_size", "num_layers"])
    def test_a_zero_size_in_config_is_one_line(self, hub_checkpoint, tmp_path, key):
        model = tmp_path / "model"
        shutil.copytree(hub_checkpoint, model)
        config = load_json(model / "config.json")
        (model / "config.json").write_text(json.dumps({**config, key: 0}), encoding="utf-8")
        message = one_line_error(self.convert(model, tmp_path / "out"))
        assert f"config.json has {key} 0; it must be a positive number" in message

    def test_kill_9_in_the_final_write_of_build_sft_data(self, tmp_path):
        output = tmp_path / "sft.jsonl"
        args = ["build-sft-data", "--input", TRAIN, "--output", output]
        killed_before("os.fsync", 1, *args)  # every row written to the temporary file, not yet renamed
        assert [name.split(".tmp-")[0] for name in listing(tmp_path)] == [".sft.jsonl"]
        assert tools_cli(*args).exit_code == 0
        assert listing(tmp_path) == ["sft.jsonl"]


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


# --------------------------------------------------------------------------- 5. lone surrogates


LONE = "\ud800"  # json.dumps writes it as the escape \ud800: legal JSON, no UTF-8 encoding


def spoiled(items: list[dict], index: int, path: tuple) -> list[dict]:
    """A deep copy of ``items`` with a lone surrogate appended to the string at ``items[index][path…]``."""
    items = json.loads(json.dumps(items))
    owner = items[index]
    for key in path[:-1]:
        owner = owner[key]
    owner[path[-1]] += LONE
    return items


class TestLoneSurrogates:
    """Issue 22, item 5: a lone surrogate in an utterance, output or id crashed build-sft-data, infer,
    build-dpo-data and rerank with UnicodeEncodeError/TypeError tracebacks."""

    @pytest.mark.parametrize("field, path", [
        ("input.conversation[2].utterance", ("input", "conversation", 2, "utterance")),
        ("output", ("output",)),
        ("id", ("id",)),
        ("input.subject_keyword[0]", ("input", "subject_keyword", 0)),
    ])
    @pytest.mark.parametrize("command", ["build-sft-data", "infer", "score", "rerank"])
    def test_nikl_files_are_rejected_at_load(self, tiny_model, tmp_path, field, path, command):
        items = load_json(DEV)
        data = tmp_path / "dev.json"
        data.write_text(json.dumps(spoiled(items, 1, path)), encoding="utf-8")
        before = snapshot(data)
        out = tmp_path / "out.json"
        args = {"build-sft-data": ["build-sft-data", "--input", data, "--output", tmp_path / "out.jsonl"],
                "infer": [*INFER, "--ckpt", tiny_model, "--input", data, "--output", out],
                "score": ["score", "--predictions", data, "--input", DEV, "--metrics", "rouge1"],
                "rerank": ["rerank", "--candidates", candidates_file(tmp_path, items), "--input", data, "--output", out],
                }[command]
        message = one_line_error(tools_cli(*args))
        assert message.startswith(f"Error: {data}: example ") and "(index 1)" in message
        assert f"field '{field}' holds a lone surrogate" in message
        assert snapshot(data) == before and "out.json" not in listing(tmp_path)

    @pytest.mark.parametrize("command", ["rerank", "build-dpo-data"])
    def test_candidates_are_rejected_at_load(self, tmp_path, command):
        items = load_json(DEV)
        candidates = candidates_file(tmp_path, items)
        rows = [json.loads(line) for line in candidates.read_text(encoding="utf-8").splitlines()]
        candidates.write_text("".join(json.dumps(row) + "\n" for row in spoiled(rows, 2, ("candidates", 1))),
                              encoding="utf-8")
        message = one_line_error(tools_cli(command, "--candidates", candidates, "--input", DEV, "--output",
                                           tmp_path / ("out.json" if command == "rerank" else "out.jsonl")))
        assert message.startswith(f"Error: {candidates}: line 3 (id {items[2]['id']!r}): field 'candidates[1]' holds "
                                  "a lone surrogate")

    def test_human_pairs_are_rejected_at_load(self, tmp_path):
        items = load_json(DEV)
        human = tmp_path / "human.jsonl"
        pair = {"id": items[0]["id"], "chosen": "좋은 요약", "rejected": "나쁜 요약"}
        human.write_text(json.dumps(spoiled([pair], 0, ("rejected",))[0]) + "\n", encoding="utf-8")
        message = one_line_error(tools_cli("build-dpo-data", "--input", DEV, "--candidates", candidates_file(tmp_path, items),
                                           "--human", human, "--output", tmp_path / "out.jsonl"))
        assert f"{human}: line 1 (id {items[0]['id']!r}): field 'rejected' holds a lone surrogate" in message

    def test_a_sidecar_row_with_one_is_regenerated(self, tiny_model, tmp_path, write_nikl):
        data = many_dialogues(write_nikl)
        out = tmp_path / "result.json"
        sidecar = Path(f"{out}.partial.jsonl")
        args = [*INFER, "--ckpt", tiny_model, "--input", data, "--output", out, "--batch-size", 1]
        killed(args, lambda: lines_in(sidecar) >= 3)
        header, first, *rest = sidecar.read_text(encoding="utf-8").splitlines()
        row = json.loads(first)
        sidecar.write_text("\n".join([header, json.dumps({**row, "output": row["output"] + LONE}), *rest]) + "\n",
                           encoding="utf-8")
        result = tools_cli(*args)
        assert result.exit_code == 0, result.output
        assert "line 2: field 'output' holds a lone surrogate" in result.output
        assert {item["id"]: item["output"] for item in load_json(out)}[row["id"]] == row["output"]


def candidates_file(folder: Path, items: list[dict]) -> Path:
    path = folder / "candidates.jsonl"
    path.write_text("".join(json.dumps({"id": item["id"], "candidates": [item["output"] or "요약", "두 사람은 이야기를 했다."]},
                                       ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- 6. resume bookkeeping


def summary_line(output: str, start: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(start))


@pytest.fixture
def full_run(tiny_model, tmp_path) -> Path:
    """A training output_dir with one full-weight checkpoint (a copy of the tiny model)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model, run / "checkpoint-1")
    return run


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

    def test_select_checkpoint_has_the_restart_it_suggests(self, full_run, write_nikl):
        data = many_dialogues(write_nikl, copies=2, splits=(TRAIN, DEV))
        common = ["select-checkpoint", "--run", full_run, "--input", data, "--no-progress", "--threads", 1,
                  "--batch-size", 1]
        killed_before("generation.hf:HFEngine.generate", 4, *common, "--max-new-tokens", 6)
        result = tools_cli(*common, "--max-new-tokens", 7)
        assert result.exit_code == 1 and result.output.count("Error: ") == 1, result.output
        message = result.output.strip().splitlines()[-1]  # after the progress note naming the checkpoint
        assert "different settings" in message and "pass --restart" in message
        result = tools_cli(*common, "--max-new-tokens", 7, "--restart")
        assert result.exit_code == 0, result.output
        assert sorted(path.name for path in (full_run / "selection").iterdir()) == [
            "checkpoint-1.dev.json", "checkpoint-1.dev.record.json"]

    def test_a_directory_at_the_sidecar_or_lock_path_is_one_line(self, tiny_model, tmp_path):
        for name, problem in (("result.json.partial.jsonl", "is a directory, where this run keeps its results sidecar"),
                              ("result.json.lock", "Is a directory")):
            (tmp_path / name).mkdir()
            message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", DEV, "--output",
                                               tmp_path / "result.json"))
            assert str(tmp_path / name) in message and problem in message
            (tmp_path / name).rmdir()

    @pytest.mark.parametrize("state", [[{"global_step": 1}], {"global_step": "1"}, {"log_history": {"a": 1}}])
    def test_a_malformed_trainer_state_is_one_line(self, full_run, state):
        state_file = full_run / "checkpoint-1" / "trainer_state.json"
        state_file.write_text(json.dumps(state), encoding="utf-8")
        message = one_line_error(tools_cli("select-checkpoint", "--run", full_run, "--input", DEV, "--no-progress"))
        assert str(state_file) in message and "from the training run or delete it" in message


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


# --------------------------------------------------------------------------- 9. more ways in, same rules


def dpo_candidates(folder: Path) -> Path:
    return candidates_file(folder, load_json(DEV))


class TestMoreWaysIn:
    """Faults beyond the issue's list, held to the same rules: a full or read-only disk under every command
    that writes, Ctrl-C during select-checkpoint, a merged copy of a killed vLLM run."""

    @pytest.mark.parametrize("command, options", [
        *((command, options) for command in ("infer", "build-sft-data", "score", "rerank", "build-dpo-data")
          for options in ("size=4k", "ro,size=1m")),
        ("select-checkpoint", "full"),  # read-only: it could not hold the run to select from
    ])
    def test_every_command_on_a_full_or_read_only_disk(self, tiny_model, tmp_path, write_nikl, options, command):
        disk = tmp_path / "disk"
        disk.mkdir()
        candidates = dpo_candidates(tmp_path)
        scored = many_dialogues(write_nikl, copies=4, splits=(TRAIN, DEV))  # a report larger than the 4k disk
        run = disk / "run"
        args = {"infer": [*INFER, "--ckpt", tiny_model, "--input", DEV, "--output", disk / "out.json"],
                "build-sft-data": ["build-sft-data", "--input", TRAIN, "--output", disk / "sft.jsonl"],
                "score": ["score", "--predictions", scored, "--references", scored, "--metrics", "rouge", "--report",
                          disk / "report.json"],
                "rerank": ["rerank", "--candidates", candidates, "--input", DEV, "--output", disk / "out.json"],
                "build-dpo-data": ["build-dpo-data", "--input", DEV, "--candidates", candidates, "--output",
                                   disk / "dpo.jsonl"],
                # the run is copied onto the small disk first (a read-only one: onto a writable mount under it)
                "select-checkpoint": ["select-checkpoint", "--run", run, "--input", DEV, "--no-progress",
                                      "--max-new-tokens", 4],
                }[command]
        before = "true"
        if command == "select-checkpoint":  # the run is copied onto the small disk first, filling it
            pages = sum(-(-path.stat().st_size // 4096) for path in tiny_model.iterdir())
            options = f"size={(pages + 4) * 4096}"
            before = f'mkdir "{run}" && cp -r "{tiny_model}" "{run / "checkpoint-1"}"'
        result, left = on_mounted(options, disk, *args, before=before)
        assert result.returncode == 1, result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and errors == result.stderr.strip().splitlines()[-1:], result.stderr
        assert "cannot write" in errors[0] and ("the disk is full" in errors[0] or "read-only" in errors[0])
        assert "Traceback" not in result.stderr
        if command == "select-checkpoint":
            left = [name for name in left if name != "run"]
        assert left == []

    def test_ctrl_c_during_select_checkpoint(self, full_run, write_nikl):
        import signal

        data = many_dialogues(write_nikl, copies=4, splits=(TRAIN, DEV))
        args = ["select-checkpoint", "--run", full_run, "--input", data, "--no-progress", "--threads", 1,
                "--batch-size", 1, "--max-new-tokens", 6]
        sidecar = full_run / "selection" / "checkpoint-1.dev.json.partial.jsonl"
        process = subprocess.Popen([*tools_command(), *map(str, args)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=offline_env())
        deadline = time.monotonic() + 120
        while lines_in(sidecar) < 3:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1] == ("interrupted: nothing half-written is left behind (infer and "
                                                   "select-checkpoint resume when re-run)")
        assert sorted(path.name for path in (full_run / "selection").iterdir()) == [sidecar.name]
        result = tools_cli(*args)
        assert result.exit_code == 0, result.output
        assert sorted(listing(full_run / "selection")) == ["checkpoint-1.dev.json", "checkpoint-1.dev.record.json"]

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

    def test_merged_copies_of_killed_vllm_runs_are_removed(self, tmp_path, monkeypatch):
        import tempfile

        from generation.vllm import merged_folder

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        dead = subprocess.Popen(["true"])  # a process id that is gone
        dead.wait()
        stale = tmp_path / f".nikl-merged.partial-{dead.pid}-0badcafe"
        (stale / "weights").mkdir(parents=True)
        live = tmp_path / f".nikl-merged.partial-{os.getppid()}-0badcafe"  # a run still going: kept
        live.mkdir()
        folder = merged_folder()
        assert not stale.exists() and live.exists() and folder.is_dir()
        assert folder.name.startswith(f".nikl-merged.partial-{os.getpid()}-")
