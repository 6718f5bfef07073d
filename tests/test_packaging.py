"""`tools versions` (the end of `make install-gpu`) and the packaging rules of the Python/Axolotl stack."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from importlib import metadata

from packaging.utils import canonicalize_name

from helpers import REPO, one_line_error, tools_cli
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

    from helpers import TEST

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


def locked(path: Path) -> dict[str, str]:
    """name (normalised) → version, from a lock file written by `make lock`."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_this_environment_is_the_lock_and_the_lock_meets_pyproject():
    """`make install` installs at the lock's versions (constraints/py<X.Y>.txt): every locked package that is
    installed has its locked version; the lock leaves torch's own stack to TORCH_SPEC; its Axolotl is in the
    train extra's range for this Python; the vLLM lock's vLLM is in the range generation/vllm.py was checked for."""
    from packaging.requirements import Requirement

    from generation.vllm import VLLM_RANGE

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    lock = locked(REPO / "constraints" / f"py{python}.txt")
    assert not {"torch", "triton", "nikl-dialogue-summarization"} & lock.keys()
    assert not [name for name in lock if name.startswith("nvidia-cu")]
    import site

    # what pip installed: site-packages itself (setuptools puts copies it vendors on sys.path too)
    site_packages = {Path(path).resolve() for path in site.getsitepackages()}
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()
                 if Path(d.locate_file("")).resolve() in site_packages}
    differ = {name: (version, installed[name]) for name, version in lock.items()
              if name in installed and installed[name] != version}
    assert not differ, f"installed versions differ from {python}'s lock (locked, installed): {differ}"
    for name in ("axolotl", "transformers", "trl", "peft", "deepspeed", "pytest"):
        assert name in lock
    axolotl = [Requirement(line) for line in PYPROJECT["project"]["optional-dependencies"]["train"]]
    [for_this_python] = [r for r in axolotl if r.marker is None or r.marker.evaluate()]
    assert lock["axolotl"] in for_this_python.specifier
    vllm_lock = locked(REPO / "constraints" / f"vllm-py{python}.txt")
    assert vllm_lock["vllm"] in Requirement("vllm" + VLLM_RANGE).specifier
    assert "axolotl" not in vllm_lock and "torch" not in vllm_lock


def test_install_and_the_vllm_environment_use_the_lock():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target, extra in (("$(STAMP):", '".[dev]"'), ("install-vllm:", '".[vllm]"'), ("install-gpu:", '".[gpu]"')):
        recipe = makefile[makefile.index("\n" + target):].split("\n\n")[0]
        [line] = [line for line in recipe.splitlines() if extra in line and "pip install" in line]
        assert "$(LOCK_ARG)" in line or "$(VLLM_LOCK_ARG)" in line, line
    assert "LOCK_ARG := $(if $(wildcard $(LOCK)),-c $(LOCK),)" in makefile
    assert "VLLM_LOCK_ARG := $(if $(wildcard $(VLLM_LOCK)),-c $(VLLM_LOCK),)" in makefile
