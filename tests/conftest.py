"""Shared fixtures: the bundled NIKL sample files, a tiny EXAONE-shaped model built once per session, and
``run_once``, which makes each Axolotl run once per test run however many pytest-xdist workers share it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.env import OFFLINE_ENV
from dataset_builders.nikl import sample_files

# No hub, no telemetry, no wandb: everything a test needs is built locally.
for key, value in OFFLINE_ENV.items():
    os.environ.setdefault(key, value)
# One CPU thread for torch here and in every subprocess (Axolotl, `tools`, `make demo`), unless the caller says
# otherwise: `make test` runs two pytest workers on a 2-core machine, and the tiny models gain nothing from more
# threads while oversubscribed cores made inference 3–20× slower (benchmarks/infer_throughput.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
# `--backend vllm` runs itself again in vLLM's own environment when it exists (`make install-vllm`); no test
# does so by accident because a developer has built one (tests that want it set NIKL_VLLM_VENV themselves).
os.environ["NIKL_VLLM_VENV"] = str(REPO / "tests" / "no-vllm-environment")
TRAIN, DEV, TEST = sample_files()  # the sample files the library ships (dataset_builders/samples/)


def pytest_collection_modifyitems(config, items):
    """`gpu`-marked tests run only where torch sees a CUDA GPU; elsewhere they are skipped, saying why.
    `rehearse_matrix` tests (every recipe rehearsed in every mode: CI's own leg) run only when `-m` names them.
    Under pytest-xdist (`make test`), the `axolotl` tests are collected first: the scheduler then hands the
    long ones out at the start instead of leaving one for the end, when the other worker has nothing left."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("axolotl") is None)  # stable: otherwise as collected
    if "rehearse_matrix" not in (config.option.markexpr or ""):
        skip = pytest.mark.skip(reason="the whole rehearsal matrix runs with -m rehearse_matrix (CI)")
        for item in items:
            if item.get_closest_marker("rehearse_matrix"):
                item.add_marker(skip)
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)")
        for item in gpu_tests:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from exaone.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-exaone") / "model")


@pytest.fixture(scope="session")
def run_once(tmp_path_factory):
    """``run_once(name, make)``: ``make(directory)`` runs once per test run, in whichever pytest-xdist worker asks
    first, while the others wait for it; every caller gets the dict it returned (stored as JSON). The Axolotl runs
    (documentation sessions, recipes, the demo) are made this way: each training happens once per `make test`,
    however the tests that inspect it are spread over the workers. A result with a ``failure`` (or an exception
    from ``make``) fails every test that asks for it, without running it again."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' basetemps are siblings

    def once(name: str, make) -> dict:
        record = shared / f"{name}.json"
        with open(shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if this worker dies
            if not record.exists():
                directory = shared / name
                shutil.rmtree(directory, ignore_errors=True)  # left by a worker that died making it
                directory.mkdir()
                try:
                    result = make(directory)
                except Exception as error:  # recorded: the other tests that need it fail the same way, at once
                    result = {"failure": f"{name}: {type(error).__name__}: {error}"}
                record.with_suffix(".tmp").write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
                record.with_suffix(".tmp").replace(record)
        result = json.loads(record.read_text(encoding="utf-8"))
        if result.get("failure"):
            pytest.fail(result["failure"], pytrace=False)
        return result

    return once


# `tools rehearse --deepspeed` of each mode the rehearsals run in (tests/test_rehearse.py, tests/test_recipes.py).
REHEARSAL_MODES = {"ddp": "none", "zero2": str(REPO / "deepspeed_configs" / "zero2.json"),
                   "zero3": str(REPO / "deepspeed_configs" / "zero3_bf16.json")}


@pytest.fixture(scope="session")
def rehearsal(run_once, tiny_model):
    """``rehearsal(recipe, mode, processes=2)``: `tools rehearse` of ``recipes/RECIPE`` in a mode of
    :data:`REHEARSAL_MODES` on the tiny model, once per test run (:func:`run_once`) → its folder, its
    ``rehearsal.json`` and the command's output. A failed rehearsal fails every test that needs it."""

    def make(recipe: str, mode: str, processes: int, work: Path) -> dict:
        result = tools_cli("rehearse", REPO / "recipes" / recipe, "--processes", processes,
                           "--deepspeed", REHEARSAL_MODES[mode],
                           "--base-model", tiny_model, "--output-dir", work)
        if result.exit_code != 0:
            return {"failure": f"tools rehearse {recipe} ({mode}, {processes} processes) failed:\n{result.output}"}
        return {"work": str(work), "output": result.output}

    def run(recipe: str, mode: str, processes: int = 2) -> tuple[Path, dict, str]:
        found = run_once(f"rehearse-{Path(recipe).stem}-{mode}-{processes}p",
                         lambda work: make(recipe, mode, processes, work))
        work = Path(found["work"])
        return work, json.loads((work / "rehearsal.json").read_text(encoding="utf-8")), found["output"]

    return run


@pytest.fixture(scope="session")
def doc_session(run_once):
    """Run a documentation session (doc_blocks.Session: CPU blocks, in order, as written) once per test run and
    return it (doc_blocks.SessionRun); a failed session fails every test that needs it, naming the command."""
    from doc_blocks import SessionRun, run_session

    def run(session) -> SessionRun:
        record = run_once(f"docs-{session.name}", lambda directory: run_session(session, directory))
        return SessionRun(Path(record["work"]), record["ran"])

    return run


@pytest.fixture
def write_nikl(tmp_path):
    """Write a NIKL file from a Python object (or raw text) and return its path."""

    def write(data, name: str = "data.json") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data, ensure_ascii=False), encoding="utf-8")
        return path

    return write


def load_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def random_lora(base: Path, *, seed: int, scale: float, target_modules=("q_proj", "v_proj", "o_proj"), **config):
    """A PEFT LoRA model on ``base`` whose B matrices (and ``modules_to_save`` copies, if any) are random, so
    the adapter changes the outputs. Save it with ``save_pretrained``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=list(target_modules), init_lora_weights=False,
                                      task_type="CAUSAL_LM", **config))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, scale)
            elif "modules_to_save" in name:
                parameter.add_(torch.randn_like(parameter) * scale)
    return model


def tools_cli(*args):
    """Run `tools ARGS…` in-process (click's test runner); returns the result (exit code and output)."""
    from click.testing import CliRunner

    from tools.cli import cli

    return CliRunner().invoke(cli, [str(arg) for arg in args])


def one_line_error(result) -> str:
    """The command failed with exactly one line, ``Error: …`` (exit code 1), which is returned."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


PROJECT_PACKAGES = ("common", "dataset_builders", "eval", "exaone", "generation", "training", "demo", "tools")


def count_calls(monkeypatch, function) -> list[tuple]:
    """Count the calls of ``function`` — one of the project's own — from anywhere: it is wrapped in every project
    module that holds it under its name (modules imported later take the wrapper from the one that defines it).
    Returns the list each call appends its arguments to; the calls themselves run as before."""
    calls: list[tuple] = []

    def counting(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)

    for module in list(sys.modules.values()):
        if (getattr(module, "__name__", "").split(".")[0] in PROJECT_PACKAGES
                and getattr(module, function.__name__, None) is function):
            monkeypatch.setattr(module, function.__name__, counting)
    return calls


_OPENING: list[list[str]] = []  # the files opened while `opened_files()` is active (innermost last)


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _OPENING and isinstance(args[0], (str, os.PathLike)):
        _OPENING[-1].append(os.fspath(args[0]))


@contextmanager
def opened_files():
    """Every file this process opens inside the block, by anyone (Python's audit hook for ``open``)."""
    if not getattr(opened_files, "hooked", False):  # an audit hook cannot be removed: add one, once
        sys.addaudithook(_record_open)
        opened_files.hooked = True
    _OPENING.append(opened := [])
    try:
        yield opened
    finally:
        _OPENING.pop()
