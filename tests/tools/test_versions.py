"""`tools versions` (the end of `make install-gpu`): one line per component, installed and what pip would install;
what is wrong with the vLLM environment."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from common.stack import COMPONENTS, Component, inspect
from helpers import fake_venv, one_line_error, tools_cli


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


def tools_versions(*args) -> "subprocess.CompletedProcess":
    """`tools versions` as a user runs it: in its own process (it imports Axolotl and DeepSpeed, whose loggers
    must not outlive a test's captured streams)."""
    import subprocess

    return subprocess.run([str(Path(sys.executable).parent / "tools"), "versions", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_one_line_per_component_with_the_installed_version_and_what_pip_would_install(tmp_path):
    # what pip would install, from `pip install --dry-run --report` files (`make check-gpu-deps`)
    report = tmp_path / "resolve.json"
    report.write_text(json.dumps({"install": [{"metadata": {"name": "flash_attn", "version": "9.9.9"}},
                                              {"metadata": {"name": "einops", "version": "0.8.0"}}]}))
    vllm_report = tmp_path / "vllm.json"
    vllm_report.write_text(json.dumps({"install": [{"metadata": {"name": "vllm", "version": "0.99.0"}}]}))
    result = tools_versions("--resolved", report, "--resolved", vllm_report)
    assert result.returncode == 0, result.stderr
    names = [component.distribution for component in COMPONENTS]
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:len(names)]] == names
    for component, line in zip(COMPONENTS, lines):
        try:
            version = metadata.version(component.distribution)
        except metadata.PackageNotFoundError:
            assert "not installed" in line
        else:
            assert line.split()[1] == version, line
    import torch

    torch_line = lines[0]
    assert ("CPU build" in torch_line) == (torch.version.cuda is None), torch_line
    assert lines[len(names):] == [f"{report}: pip would install 2 package(s), of them flash-attn 9.9.9",
                                  f"{vllm_report}: pip would install 1 package(s), of them vllm 0.99.0"]


def test_a_report_that_is_not_pip_s_is_one_line(tmp_path):
    report = tmp_path / "resolve.json"
    report.write_text("[1, 2]")
    assert "not a pip --report file" in one_line_error(tools_cli("versions", "--resolved", report))


def test_an_installed_component_that_does_not_import_is_reported():
    status = inspect(Component("pytest", "pytest_no_such_module_here", "testing"))
    assert status.version == metadata.version("pytest")
    assert status.problem.startswith("ModuleNotFoundError")
    assert "does not import" in status.line()
