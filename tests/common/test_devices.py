"""What the machine around a command is like never breaks it: busy CPU cores (the default threads), a terminal in a
legacy encoding, a moved or broken vLLM environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.devices import available_cpus, cpu_times, default_threads, idle_cpus, let_waiting_threads_sleep
from helpers import DEV, REPO, TEST, one_line_error, tools_cli
from tools.cli import cli

# --------------------------------------------------------------------------- CPU threads


def openmp_settings(env: dict[str, str]) -> str:
    """What torch's OpenMP runtime says it was given, in a process that imports `tools` and then torch."""
    result = subprocess.run([sys.executable, "-c", "import tools.cli, torch; torch.ones(4, 4) @ torch.ones(4, 4)"],
                            cwd=REPO, env={**env, "OMP_DISPLAY_ENV": "TRUE"}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_tools_makes_waiting_openmp_threads_sleep():
    """Set before torch loads its OpenMP runtime, which reads it once; a wait policy of the user's own stays."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in openmp_settings(env)
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in openmp_settings({**env, "OMP_WAIT_POLICY": "ACTIVE"})
    mine = {"GOMP_SPINCOUNT": "1000"}
    assert not let_waiting_threads_sleep(mine) and mine == {"GOMP_SPINCOUNT": "1000"}


STAT_BEFORE = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 0 0 0\nintr 1 2\n"
# Over the interval cpu0 stayed idle (100 idle of 100), cpu1 was busy (90 user, 5 steal: 5 idle of 100).
STAT_AFTER = "cpu  105 0 10 205 0 0 0 5 0 0\ncpu0 5 0 5 150 0 0 0 0 0 0\ncpu1 95 0 5 55 0 0 0 5 0 0\nintr 1 2\n"


def test_idle_cpus_are_counted_from_proc_stat():
    assert cpu_times(STAT_BEFORE) == {0: (50, 60), 1: (50, 60)}
    assert idle_cpus(STAT_BEFORE, STAT_AFTER, {0, 1}) == pytest.approx(1.05)
    assert idle_cpus(STAT_BEFORE, STAT_AFTER, {1}) == pytest.approx(0.05)  # only the CPUs this process may use


@pytest.mark.skipif(available_cpus() < 2, reason="needs 2 CPUs: one kept busy, one to count")
def test_the_default_leaves_out_a_cpu_another_process_keeps_busy():
    cpu = sorted(os.sched_getaffinity(0))[0]
    spin = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
    spinner = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.5)
        assert 1 <= default_threads() <= available_cpus() - 1
    finally:
        spinner.kill()
        spinner.wait()


def test_threads_from_the_environment_win(monkeypatch):
    import torch

    from common.devices import use_threads

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert use_threads() == 1 and torch.get_num_threads() == 1
        assert use_threads(2) == 2
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- a terminal in a legacy encoding


@pytest.mark.parametrize("command", [
    ["score", "--predictions", DEV, "--input", DEV, "--metrics", "rouge1", "--report", "{tmp}/report.json"],
    ["compare", "--input", DEV, DEV, DEV, "--report", "{tmp}/compare"],
])
def test_a_legacy_terminal_encoding_prints_and_writes(tmp_path, command):
    """`LANG=ko_KR.EUC-KR` (or PYTHONIOENCODING=euc-kr): what the terminal cannot show (—, −) is printed as ?,
    and every file is written."""
    args = [str(arg).format(tmp=tmp_path) for arg in command]
    result = CliRunner(charset="euc-kr").invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "?" in result.output and "wrote" in result.output
    assert (tmp_path / "report.json").is_file() or (tmp_path / "compare" / "report.html").is_file()


# --------------------------------------------------------------------------- vLLM's environment


def fake_venv(tmp_path: Path, tools_script: str) -> Path:
    venv = tmp_path / "venv-vllm"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "tools").write_text(tools_script)
    (venv / "bin" / "tools").chmod(0o755)
    return venv


@pytest.mark.parametrize("script, problem", [
    ("#!/moved/away/bin/python\n", "its interpreter /moved/away/bin/python is missing or not executable"),
    ("not a program\n", "not a program (neither a binary nor a script with a #! line)"),
])
def test_a_moved_or_broken_vllm_environment_is_one_line_naming_the_variable(tmp_path, monkeypatch, script, problem):
    venv = fake_venv(tmp_path, script)
    monkeypatch.setenv("NIKL_VLLM_VENV", str(venv))
    message = one_line_error(tools_cli("infer", "--ckpt", "some/model", "--input", TEST, "--output",
                                       tmp_path / "r.json", "--backend", "vllm"))
    assert f"cannot run {venv}/bin/tools from vLLM's environment (NIKL_VLLM_VENV={venv}): {problem}" in message
    assert "NIKL_RUNNING_IN_VLLM_VENV" not in os.environ


def test_no_vllm_anywhere_names_where_it_looked(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("NIKL_VLLM_VENV", "/nowhere")
    message = one_line_error(tools_cli("infer", "--ckpt", tiny_model, "--input", TEST, "--output", tmp_path / "r.json",
                                       "--backend", "vllm"))
    assert "not installed here, nor in NIKL_VLLM_VENV=/nowhere" in message


def test_tools_versions_says_what_is_wrong_with_the_vllm_environment(tmp_path, monkeypatch):
    from common.stack import COMPONENTS, _vllm_in_its_venv

    vllm = next(component for component in COMPONENTS if component.distribution == "vllm")
    monkeypatch.setenv("NIKL_VLLM_VENV", "/nowhere")
    assert "not installed here, nor in NIKL_VLLM_VENV=/nowhere" in _vllm_in_its_venv(vllm).line()
    venv = fake_venv(tmp_path, "")
    (venv / "bin" / "python").write_text("not a program\n")
    (venv / "bin" / "python").chmod(0o755)
    monkeypatch.setenv("NIKL_VLLM_VENV", str(venv))
    status = _vllm_in_its_venv(vllm)
    assert f"cannot run {venv}/bin/python from vLLM's environment (NIKL_VLLM_VENV={venv})" in status.line()
    assert status.problem  # `tools versions` exits 1 on it
