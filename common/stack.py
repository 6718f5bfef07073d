"""The installed stack, a line per component (`tools versions`, the end of `make install-gpu`), and where vLLM lives.

Each component is found by its distribution's metadata (the version), then imported, so a package that is
installed but broken — built against another torch, missing a CUDA library — says so instead of passing.
``resolved`` reads a ``pip install --dry-run --report`` file (`make check-gpu-deps`): what pip would install.

vLLM pins its own transformers (and more) where Axolotl pins another, so it is installed into an environment of
its own (`make install-vllm` → ``.venv-vllm`` in the checkout, or wherever ``NIKL_VLLM_VENV`` points);
``tools … --backend vllm`` started from the training environment runs itself again there (:func:`vllm_tools`).
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from common.checkout import REPO
from common.errors import UserError

VLLM_VENV_VARIABLE = "NIKL_VLLM_VENV"
IN_VLLM_VENV_VARIABLE = "NIKL_RUNNING_IN_VLLM_VENV"  # set on the way in, so a broken venv cannot loop


@dataclass(frozen=True)
class Component:
    distribution: str   # the name pip knows
    module: str         # what is imported to prove it loads
    role: str


COMPONENTS = (
    Component("torch", "torch", "tensors, CUDA"),
    Component("axolotl", "axolotl.cli.train", "training (recipes/)"),
    Component("transformers", "transformers", "models (Axolotl pins it exactly)"),
    Component("flash-attn", "flash_attn", "attention kernels for training (gpu extra)"),
    Component("deepspeed", "deepspeed", "ZeRO for full fine-tunes (gpu extra)"),
    Component("vllm", "vllm", "`tools infer --backend vllm` (its own environment: make install-vllm)"),
)


@dataclass
class Status:
    component: Component
    version: str | None
    detail: str = ""
    problem: str | None = None

    def line(self) -> str:
        name = f"{self.component.distribution}:"
        if self.version is None and self.problem:
            return f"{name:<14} {self.problem}"
        if self.version is None:
            return f"{name:<14} not installed{self.detail and ' ' + self.detail} — {self.component.role}"
        text = f"{name:<14} {self.version}"
        if self.detail:
            text += f" ({self.detail})"
        if self.problem:
            text += f" — installed but does not import: {self.problem}"
        return text


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _torch_detail() -> str:
    import torch

    if not torch.version.cuda:
        return "CPU build"
    if not torch.cuda.is_available():
        return f"CUDA {torch.version.cuda} build; no GPU visible"
    count = torch.cuda.device_count()
    return f"CUDA {torch.version.cuda}; {count} × {torch.cuda.get_device_name(0)}"


def inspect(component: Component) -> Status:
    """The component's version, and whether it imports (the error's last line when it does not)."""
    status = Status(component, installed_version(component.distribution))
    if status.version is None:
        return status
    try:
        importlib.import_module(component.module)
        if component.distribution == "torch":
            status.detail = _torch_detail()
    except Exception as error:  # noqa: BLE001 - any failure to import is what this reports
        status.problem = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
    return status


def vllm_venv() -> Path:
    """Where `make install-vllm` puts vLLM's environment (``NIKL_VLLM_VENV`` overrides)."""
    return Path(os.environ.get(VLLM_VENV_VARIABLE) or REPO / ".venv-vllm")


def vllm_venv_origin() -> str:
    """Where vLLM's environment was looked for, and why there: ``NIKL_VLLM_VENV=/path``, or the default."""
    if os.environ.get(VLLM_VENV_VARIABLE):
        return f"{VLLM_VENV_VARIABLE}={os.environ[VLLM_VENV_VARIABLE]}"
    return f"{vllm_venv()} (the default; {VLLM_VENV_VARIABLE} is not set)"


def unrunnable(program: Path) -> OSError | None:
    """The error running ``program`` would end in when it is neither a binary nor a script whose ``#!`` line names
    an interpreter that exists (a moved environment): checked before anything is said about running it."""
    try:
        with open(program, "rb") as file:
            first = file.readline(4096)
    except OSError as error:
        return error
    if first.startswith(b"\x7fELF"):
        return None
    if not first.startswith(b"#!") or not first[2:].split():
        return OSError(errno.ENOEXEC, "not a program (neither a binary nor a script with a #! line)")
    interpreter = os.fsdecode(first[2:].split()[0])
    if os.access(interpreter, os.X_OK):
        return None
    return OSError(errno.ENOENT, f"its interpreter {interpreter} is missing or not executable")


def cannot_run_vllm_venv(program: Path, error: OSError) -> str:
    """One phrase for a vLLM environment that is there but does not run (moved, or broken)."""
    return (f"cannot run {program} from vLLM's environment ({vllm_venv_origin()}): {error.strerror or error} — "
            f"moved or broken? rebuild it with `make install-vllm`, or point {VLLM_VENV_VARIABLE} at a working one")


def vllm_tools() -> Path | None:
    """The vLLM environment's ``tools``, when this environment has no vLLM and that one exists (and this
    process was not itself started there)."""
    if importlib.util.find_spec("vllm") is not None or os.environ.get(IN_VLLM_VENV_VARIABLE):
        return None
    tools = vllm_venv() / "bin" / "tools"
    return tools if os.access(tools, os.X_OK) else None


def _vllm_in_its_venv(component: Component) -> Status:
    """vLLM as installed in :func:`vllm_venv`: its version, and whether it imports there."""
    venv = vllm_venv()
    python = venv / "bin" / "python"
    status = Status(component, None)
    if not os.access(python, os.X_OK):
        status.detail = f"here, nor in {vllm_venv_origin()}"
        return status
    probe = ("import importlib.metadata as m, sys; print(m.version('vllm')); sys.stdout.flush(); "
             f"import {component.module}")
    try:
        result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    except OSError as error:
        status.problem = cannot_run_vllm_venv(python, error)
        return status
    lines = result.stdout.split()
    status.version = lines[0] if lines else None
    status.detail = f"in {venv}, where `tools infer --backend vllm` runs"
    if result.returncode != 0 and status.version:
        error = (result.stderr.strip().splitlines() or ["exit status " + str(result.returncode)])[-1]
        status.problem = error
    return status


def stack() -> list[Status]:
    statuses = []
    for component in COMPONENTS:
        status = inspect(component)
        if component.distribution == "vllm" and status.version is None:
            status = _vllm_in_its_venv(component)
        statuses.append(status)
    return statuses


def resolved(report: Path | str) -> dict[str, str]:
    """Distribution name (lower case, ``-`` for ``_``) → version, for everything a ``pip install --dry-run
    --report FILE`` would install."""
    path = Path(report)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data["install"]
        return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in items}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: not a pip --report file ({error})") from None
