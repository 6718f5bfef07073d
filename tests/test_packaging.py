"""The packaging rules of the Python/Axolotl stack: each Python gets the Axolotl line that runs there, this
environment is the lock, `make install`/`install-gpu`/`install-vllm` use it and never force-reinstall."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


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
