"""common/files.py: files get the umask's mode (an existing file keeps its own), a failed write — a full or
read-only disk, an unwritable folder — is one line under every command, and a name too long for its side files
fails before any work."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from common.io import write_json
from helpers import (
    DEV,
    INFER,
    TEST,
    TRAIN,
    candidates_file,
    load_json,
    many_dialogues,
    on_mounted,
    one_line_error,
    tools_cli,
)


# --------------------------------------------------------------------------- how files are written


def test_written_files_respect_the_umask_and_keep_an_existing_mode(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.json"
        write_json(fresh, [1])
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        private = tmp_path / "private.json"
        private.write_text("[]")
        private.chmod(0o600)
        write_json(private, [2])
        assert stat.S_IMODE(private.stat().st_mode) == 0o600 and load_json(private) == [2]
    finally:
        os.umask(old)


@pytest.mark.parametrize("make_output, problem", [
    (lambda tmp: tmp / "a-file" / "result.json", "cannot write"),  # a file where a folder should be
    (lambda tmp: tmp / "folder", "it is a directory"),
])
def test_unwritable_outputs_are_one_line(tmp_path, make_output, problem):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "folder").mkdir()
    output = make_output(tmp_path)
    from common.io import write_jsonl

    from common.errors import UserError

    with pytest.raises(UserError, match=problem) as error:
        write_jsonl(output, [{"a": 1}])
    assert str(output) in str(error.value)


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


# --------------------------------------------------------------------------- 9. more ways in, same rules


def dpo_candidates(folder: Path) -> Path:
    return candidates_file(folder, load_json(DEV))


class TestMoreWaysIn:
    """Faults beyond the issue's list, held to the same rules: a full or read-only disk under every command
    that writes, Ctrl-C during select-checkpoint, a merged copy of a killed vLLM run."""

    @pytest.mark.parametrize("command, options", [
        *((command, options) for command in ("infer", "build-sft-data", "score", "rerank", "build-dpo-data")
          for options in ("size=4k", "ro,size=1m") if (command, options) != ("infer", "size=4k")),
        # the two that generate until the disk fills (~10 s each): CI runs them (-m extended)
        pytest.param("infer", "size=4k", marks=pytest.mark.extended),
        pytest.param("select-checkpoint", "full", marks=pytest.mark.extended),  # read-only: no room for the run
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


def test_an_unwritable_output_is_one_line(tmp_path):
    (tmp_path / "a-file").write_text("x")
    message = one_line_error(tools_cli("build-sft-data", "--input", TRAIN, "--output", tmp_path / "a-file" / "o.jsonl"))
    assert f"cannot write {tmp_path / 'a-file' / 'o.jsonl'}" in message
