"""common/io.py, writing outputs: a device, a FIFO or a redirected stream is written in place (never replaced by a
rename), a symlink and its target are one output, no command writes over its input or into a model's or tokenizer's
folder, an output naming a folder is refused, and a signal during a write leaves no temporary file (Ctrl-C after the
output is written is not an interrupted run)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import click
import pytest

from common.io import atomic_open, stream_or_device, write_json, write_text
from helpers import (DEV, INFER, REPO, TEST, TRAIN, listing, load_json, lock_held_elsewhere, one_line_error, snapshot,
                     tools_cli)


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


def test_a_symlink_and_its_target_are_one_output(tmp_path, tiny_model):
    from generation.sidecar import side_files

    target = tmp_path / "sub.json"
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    assert side_files(link) == side_files(target)
    with lock_held_elsewhere(Path(str(target) + ".lock")):
        message = one_line_error(tools_cli(*INFER, "--ckpt", tiny_model, "--input", TEST, "--output", link))
        assert f"{link} is being written by another run (it holds {target}.lock)" in message
    assert not target.exists() and not Path(str(link) + ".lock").exists()


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


@pytest.fixture
def dev_copy(tmp_path) -> Path:
    path = tmp_path / "dev.json"
    shutil.copy(DEV, path)
    return path


# --------------------------------------------------------------------------- output = input


def candidates_file(tmp_path: Path, source: Path = DEV) -> Path:
    path = tmp_path / "candidates.jsonl"
    path.write_text("".join(json.dumps({"id": item["id"], "candidates": [item["output"], "두 사람은 이야기를 했다."]},
                                       ensure_ascii=False) + "\n" for item in load_json(source)), encoding="utf-8")
    return path


def test_no_command_overwrites_its_input(tmp_path, dev_copy, tiny_model, monkeypatch):
    candidates = candidates_file(tmp_path)
    link = tmp_path / "link.json"
    link.symlink_to(dev_copy)
    monkeypatch.chdir(tmp_path)  # relative spellings of the same file (the working directory is restored)
    cases = [
        (["infer", "--ckpt", tiny_model, "--input", dev_copy, "--output", "dev.json"], "--output dev.json", "--input"),
        (["infer", "--ckpt", tiny_model, "--input", "./dev.json", "--output", link], "--output", "--input"),
        (["build-sft-data", "--input", dev_copy, "--output", link], "--output", "--input"),
        (["build-dpo-data", "--input", dev_copy, "--candidates", candidates, "--output", "../" + tmp_path.name + "/dev.json"],
         "--output", "--input"),
        (["build-dpo-data", "--input", dev_copy, "--candidates", candidates, "--output", candidates], "--output", "--candidates"),
        (["rerank", "--candidates", candidates, "--input", dev_copy, "--output", dev_copy], "--output", "--input"),
        (["score", "--predictions", dev_copy, "--input", DEV, "--metrics", "rouge1", "--report", link],
         "--report", "--predictions"),
        (["cpu-overlay", REPO / "recipes" / "exaone_lora.yml", "--base-model", tiny_model, "--train-data", candidates,
          "--output-dir", tmp_path / "o", "--config-out", candidates], "--config-out", "--train-data"),
    ]
    before = {path: path.read_bytes() for path in (dev_copy, candidates)}
    for args, out_option, in_option in cases:
        message = one_line_error(tools_cli(*args))
        assert out_option in message and f"is the same file as {in_option}" in message, (args, message)
        assert "refusing to overwrite an input" in message
        assert {path: path.read_bytes() for path in before} == before, args  # untouched
    assert link.is_symlink()


def test_a_symlinked_output_is_written_through(tmp_path):
    target = tmp_path / "shared" / "result.json"
    target.parent.mkdir()
    target.write_text("[]")
    link = tmp_path / "result.json"
    link.symlink_to(target)
    result = tools_cli("build-sft-data", "--input", TRAIN, "--output", link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and len(target.read_text(encoding="utf-8").splitlines()) == len(load_json(TRAIN))


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path):
    from tools.cli import terminate_cleanly

    previous = signal.getsignal(signal.SIGTERM)
    terminate_cleanly()
    try:
        with pytest.raises(SystemExit) as exit_info:
            with atomic_open(tmp_path / "result.json") as file:
                file.write("half")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
        assert exit_info.value.code == 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_output_naming_a_directory_is_refused(tmp_path):
    result = tools_cli("build-sft-data", "--input", TRAIN, "--output", str(tmp_path / "out") + "/")
    assert result.exit_code == 2 and "names a directory" in result.output
    assert not (tmp_path / "out").exists()


class TestSideFilesNeverDestroyInputs:
    """Issue 22, item 3: an input named OUT.lock was deleted by `infer --output OUT`, one named
    OUT.partial.jsonl lost its last byte; --output inside the checkpoint or tokenizer folder replaced a file
    there; `build-tiny-model --output-dir D --input D/mydata.json` deleted its own input and all of D."""

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
