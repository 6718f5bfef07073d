"""The suite's shared helpers: the repository and its sample NIKL files, running `tools` in-process and reading its
one-line errors, a random LoRA on a model, counting a function's calls and the files a block opens. Tests import
them (``from helpers import …``); the fixtures and hooks are in conftest.py."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from dataset_builders.nikl import sample_files

REPO = Path(__file__).resolve().parent.parent
TRAIN, DEV, TEST = sample_files()  # the sample files the library ships (dataset_builders/samples/)

# `tools rehearse --deepspeed` of each mode the rehearsals run in (tests/test_rehearse.py, tests/test_recipes.py).
REHEARSAL_MODES = {"ddp": "none", "zero2": str(REPO / "deepspeed_configs" / "zero2.json"),
                   "zero3": str(REPO / "deepspeed_configs" / "zero3_bf16.json")}


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
