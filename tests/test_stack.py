"""`tools versions` (the end of `make install-gpu`) and the packaging rules of the Python/Axolotl stack."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from importlib import metadata

from conftest import REPO, one_line_error, tools_cli
from common.stack import COMPONENTS, Component, inspect

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


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


def test_each_python_gets_the_axolotl_line_that_runs_there():
    """0.21 (the default) needs Python >= 3.12; 3.11 keeps 0.19; the installed one matches this Python."""
    axolotl = PYPROJECT["project"]["optional-dependencies"]["train"]
    assert axolotl == ["axolotl>=0.21.0,<0.22; python_version >= '3.12'",
                       "axolotl>=0.19.0,<0.20; python_version < '3.12'"]
    expected = "0.21." if sys.version_info >= (3, 12) else "0.19."
    assert metadata.version("axolotl").startswith(expected)
    assert (REPO / ".python-version").read_text().split()[0] == "3.12"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^PYTHON \?= python3\.12$", makefile, flags=re.MULTILINE)


def test_install_gpu_never_force_reinstalls_and_builds_flash_attn_against_torch():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile[makefile.index("\ninstall-gpu:"):].split("\n\n")[0]
    assert "--force-reinstall" not in recipe
    extras = [line for line in recipe.splitlines() if '".[gpu]"' in line]
    assert extras and all("--no-build-isolation" in line for line in extras)
    assert recipe.index("torch") < recipe.index('".[gpu]"') < recipe.index("pip check") < recipe.index("tools versions")


def test_backend_vllm_runs_itself_again_in_the_vllm_environment(tmp_path):
    """Without vLLM here but with its environment built, the same command line runs there, said in one line;
    a broken vLLM environment cannot send it round in a loop."""
    import os
    import subprocess

    from conftest import TEST

    venv = tmp_path / "venv-vllm"
    (venv / "bin").mkdir(parents=True)
    seen = tmp_path / "seen.txt"
    fake = venv / "bin" / "tools"  # stands in for the vLLM environment's `tools`: records what it was given
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$NIKL_RUNNING_IN_VLLM_VENV\" \"$@\" > {seen}\n")
    fake.chmod(0o755)
    args = ["infer", "--ckpt", "some/model", "--input", str(TEST), "--output", str(tmp_path / "r.json"),
            "--backend", "vllm", "--gpu-memory-utilization", "0.8"]
    env = {**os.environ, "NIKL_VLLM_VENV": str(venv)}
    result = subprocess.run([str(Path(sys.executable).parent / "tools"), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"running this command with {fake}" in result.stderr
    assert seen.read_text().splitlines() == ["1", *args]

    env["NIKL_RUNNING_IN_VLLM_VENV"] = "1"  # already there, and still no vLLM: the plain error, no second hop
    result = subprocess.run([str(Path(sys.executable).parent / "tools"), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "make install-vllm" in result.stderr, result.stderr
