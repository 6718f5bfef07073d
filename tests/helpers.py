"""The suite's shared helpers: the repository and its sample NIKL files, running `tools` in-process and reading its
one-line errors, a random LoRA on a model, counting a function's calls and the files a block opens. Tests import
them (``from helpers import …``); the fixtures and hooks are in conftest.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from common.env import offline_env
from dataset_builders.nikl import sample_files
from eval.bleurt import BleurtConfig, BleurtForSequenceClassification
from tools.cli import cli


REPO = Path(__file__).resolve().parent.parent
TRAIN, DEV, TEST = sample_files()  # the sample files the library ships (dataset_builders/samples/)

# `tools rehearse --deepspeed` of each mode the rehearsals run in (tests/training/test_rehearse.py, tests/test_recipes.py).
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


INFER = ["infer", "--no-progress", "--threads", "1", "--max-new-tokens", "6"]


# --------------------------------------------------------------------------- vLLM's environment


def fake_venv(tmp_path: Path, tools_script: str) -> Path:
    venv = tmp_path / "venv-vllm"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "tools").write_text(tools_script)
    (venv / "bin" / "tools").chmod(0o755)
    return venv


def snapshot(*paths: Path) -> dict[Path, bytes]:
    """Every file under ``paths`` (files or folders) and its bytes, to compare before and after a command."""
    files = {}
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            files[file] = file.read_bytes()
    return files


@contextmanager
def lock_held_elsewhere(path: Path):
    """Another process holds an exclusive ``flock`` on ``path`` (as a second run of a command would) for the block."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        yield
    finally:
        holder.kill()
        holder.wait()


def tools_command() -> list[str]:
    script = Path(sys.executable).with_name("tools")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tools.cli"]


def killed(args: list, until, timeout: float = 120) -> None:
    """Run `tools ARGS…` in a subprocess and kill -9 it as soon as ``until()`` is true."""
    process = subprocess.Popen([*tools_command(), *map(str, args)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=offline_env())
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert process.poll() is None, f"finished before it could be killed: {process.stderr.read().decode()}"
            assert time.monotonic() < deadline, "never reached the point to kill it at"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


# Runs `tools ARGS…` with one function wrapped so that the process kills itself (SIGKILL: no handler, no
# cleanup) just before the Nth call: a kill -9 at an exact point of a real run.
KILL_BEFORE = """
import importlib, os, signal, sys
where, name, nth = sys.argv[1].rsplit(".", 1)[0], sys.argv[1].rsplit(".", 1)[1], int(sys.argv[2])
parts = where.split(":")
owner = importlib.import_module(parts[0])
for attribute in parts[1:]:
    owner = getattr(owner, attribute)
original, calls = getattr(owner, name), []
def wrapper(*args, **kwargs):
    calls.append(1)
    if len(calls) == nth:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(owner, name, wrapper)
from tools.cli import cli
cli(sys.argv[3:])
"""


def killed_before(function: str, nth: int, *args) -> None:
    """kill -9 `tools ARGS…` just before the ``nth`` call of ``function`` (``module.name`` or
    ``module:Class.name``)."""
    env = {**offline_env(), "PYTHONPATH": f"{REPO}{':' + os.environ['PYTHONPATH'] if os.environ.get('PYTHONPATH') else ''}"}
    result = subprocess.run([sys.executable, "-c", KILL_BEFORE, function, str(nth), *map(str, args)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, f"not killed (exit {result.returncode}): {result.stderr[-2000:]}"


def private_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


LEFT = "--- left on the disk:"


def on_mounted(options: str, folder: Path, *args, before: str = "true") -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `tools ARGS…` with a fresh tmpfs mounted on ``folder`` (``size=200k`` for a nearly full disk, ``ro``
    for a read-only one), in a private mount namespace (``unshare -rm``) that vanishes with the process:
    the disk faults of a real machine, without root and without touching the system's mounts. ``before``:
    a shell command run once it is mounted. Returns the result and what the command left on that disk
    (hidden files included)."""
    if not private_mounts_work():
        pytest.skip("needs `unshare -rm` (user and mount namespaces) to mount a small or read-only tmpfs")
    script = (f'mount -t tmpfs -o {options} tmpfs "$0" && {before} && '
              f'{{ "$@"; code=$?; echo "{LEFT}"; ls -A "$0"; exit $code; }}')
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(folder), *tools_command(), *map(str, args)],
                            capture_output=True, text=True, env=offline_env(), timeout=300)
    assert LEFT in result.stdout, result.stderr
    return result, result.stdout.split(LEFT, 1)[1].split()


def lines_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def many_dialogues(write_nikl, copies: int = 8, splits=(TRAIN, DEV, TEST)) -> Path:
    """The bundled dialogues, ``copies`` times over under new ids: a run long enough to be killed midway."""
    return write_nikl([{**item, "id": f"{item['id']}-{copy}"} for copy in range(copies)
                       for path in splits for item in load_json(path)], "many.json")


def listing(folder: Path) -> list[str]:
    """Every name under ``folder``, hidden ones included."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def candidates_file(folder: Path, items: list[dict]) -> Path:
    path = folder / "candidates.jsonl"
    path.write_text("".join(json.dumps({"id": item["id"], "candidates": [item["output"] or "요약", "두 사람은 이야기를 했다."]},
                                       ensure_ascii=False) + "\n" for item in items), encoding="utf-8")
    return path


CORPUS = [turn["utterance"] for item in load_json(TRAIN) + load_json(DEV) for turn in item["input"]["conversation"]]
CORPUS += [item["output"] for item in load_json(TRAIN) + load_json(DEV)]


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_tokenizer():
    """A WordPiece tokenizer trained on the fixtures; Hangul kept whole (no lowercasing/accent stripping)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=400, special_tokens=SPECIALS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")


def tiny_bleurt(directory, vocab_size, embedding_size, seed=0):
    torch.manual_seed(seed)
    config = BleurtConfig(vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BleurtForSequenceClassification(config).save(directory)
