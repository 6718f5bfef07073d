"""What a command writes never destroys something else: a device, a FIFO or a redirected stream is written in
place (never replaced by a rename), a symlink and its target are one output, an output folder is never a model's
folder, the results sidecar is kept whenever it holds a result, a name too long fails before any work, and a
Ctrl-C after the output is written does not call a complete run interrupted."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import click
import pytest

from common.io import stream_or_device, write_json, write_text
from helpers import DEV, REPO, TEST, TRAIN, load_json, one_line_error, tools_cli

INFER = ["infer", "--no-progress", "--threads", "1", "--max-new-tokens", "4"]


# --------------------------------------------------------------------------- devices, FIFOs, streams


def test_a_fifo_output_is_written_in_place(tmp_path):
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text(encoding="utf-8")))
    reader.start()
    write_json(fifo, {"rouge1": 12.5})
    reader.join(timeout=30)
    assert json.loads(received[0]) == {"rouge1": 12.5}
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["report.json"]


def test_a_stream_of_this_process_is_written_where_it_stands(tmp_path):
    """/dev/fd/N (and /dev/stdout: /dev/fd/1) redirected to a file: written through the open descriptor, after
    what was printed before — not a new file renamed over the one the shell opened."""
    out = tmp_path / "out.txt"
    with open(out, "w", encoding="utf-8") as shell_redirect:
        inode = os.fstat(shell_redirect.fileno()).st_ino
        shell_redirect.write("printed before\n")
        shell_redirect.flush()
        write_text(f"/dev/fd/{shell_redirect.fileno()}", "the report\n")
        shell_redirect.write("printed after\n")
    assert out.read_text(encoding="utf-8") == "printed before\nthe report\nprinted after\n"
    assert out.stat().st_ino == inode and os.listdir(tmp_path) == ["out.txt"]


def test_report_to_dev_stdout_redirected_to_a_file(tmp_path):
    """`tools score … --report /dev/stdout > out.txt`: the table and the report both land in out.txt, the same
    file the shell opened."""
    out = tmp_path / "out.txt"
    out.write_text("")
    inode = out.stat().st_ino
    with open(out, "a", encoding="utf-8") as stdout:
        result = subprocess.run([sys.executable, "-m", "tools.cli", "score", "--predictions", DEV, "--input", DEV,
                                 "--metrics", "rouge1", "--report", "/dev/stdout"], cwd=REPO, stdout=stdout,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert out.stat().st_ino == inode and '"rouge1": 100.0' in text and "wrote /dev/stdout" in text
    assert "ROUGE-1" in text.split('"per_example"')[1]  # the table comes after the report, in the same file


def test_devices_are_recognised_and_never_renamed_over():
    from common.io import _in_place

    assert stream_or_device("/dev/null") == "a character device"
    assert stream_or_device("/dev/stdout") == "an open stream"
    with _in_place("/dev/null") as handle:  # what atomic_open writes through: the device itself
        assert os.path.samefile(f"/proc/self/fd/{handle.fileno()}", "/dev/null")
    assert stream_or_device(REPO / "README.md") is None and stream_or_device(REPO / "no-such-file") is None


@pytest.mark.parametrize("command", [
    [*INFER, "--ckpt", "some/model", "--input", TEST],
    ["build-sft-data", "--input", TRAIN],
])
def test_commands_with_side_files_refuse_a_fifo_output(tmp_path, command):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    result = tools_cli(*command, "--output", fifo)
    assert result.exit_code == 2 and f"{fifo} is a FIFO, not a file: this command keeps OUTPUT." in result.output
    assert os.listdir(tmp_path) == ["out.json"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


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


def test_a_symlink_and_its_target_are_one_output(tmp_path, tiny_model):
    from generation.sidecar import side_files

    target = tmp_path / "sub.json"
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    assert side_files(link) == side_files(target)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(target) + '.lock'!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", TEST, "--output", link))
        assert f"{link} is being written by another run (it holds {target}.lock)" in message
    finally:
        holder.kill()
        holder.wait()
    assert not target.exists() and not Path(str(link) + ".lock").exists()


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


# --------------------------------------------------------------------------- names too long


@pytest.mark.parametrize("command, option, extra", [
    (INFER + ["--ckpt", "some/model", "--input", TEST], "--output", ".json"),
    (["build-sft-data", "--input", TRAIN], "--output", ".jsonl"),
    (["build-tiny-model"], "--output-dir", ""),
    (["convert-exaone", "--model", "some/model"], "--output-dir", ""),
])
def test_a_name_too_long_for_a_side_file_fails_before_any_work(tmp_path, command, option, extra):
    """The output's own name fits (255 bytes), the temporary file or side file beside it would not."""
    name = "a" * (240 - len(extra)) + extra
    result = tools_cli(*command, option, tmp_path / name)
    assert result.exit_code == 2 and "name too long" in result.output and "shorten the name by" in result.output
    assert os.listdir(tmp_path) == []


def test_a_name_that_fits_with_its_side_files_is_accepted(tmp_path):
    from common.files import name_too_long

    # 3 bytes a syllable in UTF-8; the longest file written: .NAME.partial.jsonl.tmp-PID-RANDOM, 36 bytes more
    assert name_too_long(tmp_path / ("가" * 71 + ".json"), side_suffixes=(".partial.jsonl", ".lock")) is None
    problem = name_too_long(tmp_path / ("가" * 72 + ".json"), side_suffixes=(".partial.jsonl", ".lock"))
    assert problem.endswith("257 bytes here, and this file system allows 255; shorten the name by 2 bytes")


# --------------------------------------------------------------------------- Ctrl-C once the output is written


def interrupt_when(monkeypatch, starts: str) -> None:
    """Ctrl-C lands while the command prints the line that starts with ``starts``."""
    real_echo = click.echo

    def echo(message=None, *args, **kwargs):
        if str(message).startswith(starts):
            raise KeyboardInterrupt
        return real_echo(message, *args, **kwargs)

    monkeypatch.setattr(click, "echo", echo)


def test_ctrl_c_after_the_output_is_written_exits_0(tmp_path, monkeypatch):
    out = tmp_path / "train.jsonl"
    interrupt_when(monkeypatch, "wrote")
    result = tools_cli("build-sft-data", "--input", TRAIN, "--output", out)
    assert result.exit_code == 0 and f"interrupted after {out} was written: it is complete" in result.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(load_json(TRAIN))


def test_ctrl_c_before_the_output_is_written_exits_130(tmp_path, monkeypatch):
    import common.io

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common.io, "write_jsonl", interrupted)
    out = tmp_path / "train.jsonl"
    result = tools_cli("build-sft-data", "--input", TRAIN, "--output", out)
    assert result.exit_code == 130 and "interrupted: nothing half-written" in result.output and not out.exists()
