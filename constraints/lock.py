"""Writes the lock files `make install` and `make install-vllm` install from: ``constraints/py<X.Y>.txt`` (the
training environment, ``.[dev]``) and ``constraints/vllm-py<X.Y>.txt`` (vLLM's environment, ``.[vllm]``).

Run by `make lock`, with the Python of a fresh venv that holds only torch (TORCH_SPEC). Why a lock: the ranges in
pyproject.toml let pip pick whatever is newest on the day, and on 2026-12-06 that broke a clean install — newer
transformers releases (5.21-5.24, which want kernels 0.19) beside Axolotl 0.21 (transformers==5.20.1, kernels<0.18)
sent pip's resolver backtracking through every old MarkupSafe until one failed to build. With the lock as a
constraint (`pip install -c`), pip installs the versions the suite passed with, and resolves at once.

How the lock is made: Axolotl first, alone (the train extra's line for this Python: it pins transformers, TRL,
PEFT… exactly), then the project on top, then `pip check`; `pip freeze` of the result is the lock. vLLM's is what
pip would install into an empty venv with this torch (a dry run: nothing is downloaded beyond metadata).
torch and the CUDA libraries it brings are left out of both: TORCH_SPEC (and, on a GPU machine, the index it
comes from) decides those.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = "nikl-dialogue-summarization"
PYTHON = ".".join(map(str, sys.version_info[:2]))  # the lock files are per Python: py<X.Y>.txt
# torch's own stack: chosen by TORCH_SPEC and its index (CPU or a CUDA version), so never pinned here.
TORCH_STACK = re.compile(r"^(torch|triton|nvidia-(?!ml-py\b).*|cuda-.*)$")


def pip(*args: str, capture: bool = False) -> str:
    command = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(command[2:]), flush=True)
    result = subprocess.run(command, cwd=REPO, check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout or ""


def axolotl_requirement() -> str:
    """The train extra's Axolotl line whose marker this Python meets."""
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for line in pyproject["project"]["optional-dependencies"]["train"]:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            return f"{requirement.name}{requirement.specifier}"
    raise SystemExit(f"pyproject.toml: no Axolotl line in the train extra for Python {sys.version.split()[0]}")


def pins(versions: dict[str, str]) -> list[str]:
    from packaging.utils import canonicalize_name

    return sorted((f"{name}=={version}" for name, version in versions.items()
                   if (canonical := canonicalize_name(name)) != PROJECT and not TORCH_STACK.match(canonical)),
                  key=str.lower)


def write(path: Path, what: str, lines: list[str], torch: str) -> None:
    header = [f"# {what}, Python {PYTHON}: written by `make lock` on {datetime.date.today().isoformat()}.",
              "# `make install` passes it to pip as a constraint (-c). torch and its CUDA libraries are not here:",
              "# TORCH_SPEC in the Makefile decides them. Regenerate with `make lock` (constraints/lock.py).",
              f"# torch at locking: {torch}"]
    path.write_text("\n".join(header + lines) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO)}: {len(lines)} pins")


def main() -> None:
    from importlib import metadata

    pip("install", "--quiet", "packaging")
    torch = metadata.version("torch")
    with tempfile.TemporaryDirectory() as scratch:
        torch_constraint = Path(scratch) / "torch.txt"
        torch_constraint.write_text(f"torch=={torch}\n", encoding="utf-8")
        pip("install", "--quiet", "-c", str(torch_constraint), axolotl_requirement())
        pip("install", "--quiet", "-c", str(torch_constraint), "-e", ".[dev]")
        pip("check")
        freeze = pip("freeze", "--exclude-editable", capture=True)
        versions = dict(line.split("==", 1) for line in freeze.splitlines() if "==" in line)
        write(REPO / "constraints" / f"py{PYTHON}.txt", "The training environment (.[dev])", pins(versions), torch)

        report = Path(scratch) / "vllm.json"
        pip("install", "--quiet", "--dry-run", "--ignore-installed", "-c", str(torch_constraint),
            "--report", str(report), "-e", ".[vllm]")
        items = json.loads(report.read_text(encoding="utf-8"))["install"]
        versions = {item["metadata"]["name"]: item["metadata"]["version"] for item in items}
        write(REPO / "constraints" / f"vllm-py{PYTHON}.txt", "vLLM's environment (.[vllm])", pins(versions), torch)


if __name__ == "__main__":
    main()
