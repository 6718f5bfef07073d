"""`--help` shows the defaults the library runs with: every default an option's help names is compared with the
dataclass, function or constant the library itself uses, so the two cannot drift apart."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields

import pytest

from helpers import DEV, tools_cli
from dataset_builders.dpo import build_dpo_rows
from dataset_builders.learnable import DEFAULT_SIZES, write_task
from dataset_builders.prompt import SYSTEM_PROMPTS, resolve_system_prompt
from dataset_builders.synthetic import write_split
from eval.bertscore import BertScorer
from eval.bleurt import BleurtScorer
from eval.compare.statistics import RESAMPLES, SEED
from eval.loading import BERTSCORE_MODEL, BLEURT_MODEL
from eval.metrics import score_pairs
from eval.registry import OFFICIAL_PARTS, scorers_for
from exaone.convert import convert
from exaone.tiny import build_tiny_exaone
from generation.decoding import Decoding
from generation.batching import DEFAULT_MAX_BATCH_TOKENS, VLLM_DIALOGUES_PER_CALL
from generation.options import InferenceOptions
from generation.vllm import VLLMSettings
from tools.cli import cli
from eval.compare.report import write_report
from training.rehearse import launch, prepare
from training.selection import select_checkpoint


def default(owner, name):
    return inspect.signature(owner).parameters[name].default


GENERATION = {  # `tools infer` and `tools select-checkpoint` generate alike
    "--backend": InferenceOptions().backend,
    "--dtype": InferenceOptions().dtype,
    "--device": InferenceOptions().device,
    "--max-new-tokens": Decoding().max_new_tokens,
    "--batch-size": f"no cap; vllm: {VLLM_DIALOGUES_PER_CALL} per call",
    "--max-batch-tokens": f"{DEFAULT_MAX_BATCH_TOKENS['cpu']} on the CPU, {DEFAULT_MAX_BATCH_TOKENS['gpu']} on a GPU",
    "--gpu-memory-utilization": VLLMSettings().gpu_memory_utilization,
    "--tensor-parallel-size": VLLMSettings().tensor_parallel_size,
}
METRIC_MODELS = {"--bertscore-model": default(BertScorer, "model"), "--bleurt-model": default(BleurtScorer, "model")}
METRIC_BATCH = {"--batch-size": f"{default(BertScorer, 'batch_size')} for BERTScore, "
                                f"{default(BleurtScorer, 'batch_size')} for BLEURT"}
BOOTSTRAP = {"--resamples": RESAMPLES, "--seed": SEED}
# command → option → the library's value (the shown default must be it, or start with it)
LIBRARY = {
    "infer": {**GENERATION, "--temperature": Decoding().temperature, "--top-p": Decoding().top_p,
              "--seed": Decoding().seed},
    "select-checkpoint": {**GENERATION, **METRIC_MODELS, **BOOTSTRAP, "--metric": default(select_checkpoint, "metric")},
    "compare": {**METRIC_MODELS, **METRIC_BATCH, **BOOTSTRAP, "--examples": default(write_report, "examples")},
    "build-dpo-data": {**METRIC_MODELS, "--metric": default(select_checkpoint, "metric"),
                       "--strategy": default(build_dpo_rows, "strategy"),
                       "--min-margin": default(build_dpo_rows, "min_margin"),
                       "--max-pairs-per-prompt": default(build_dpo_rows, "max_pairs_per_prompt")},
    "score": {**METRIC_MODELS, **METRIC_BATCH, "--metrics": ",".join(OFFICIAL_PARTS)},
    "build-synthetic-data": {"--seed": default(write_split, "seed")},
    "build-tiny-model": {f"--{name.replace('_', '-')}": default(build_tiny_exaone, name)
                         for name in ("shape", "hidden_size", "num_layers", "seed")},
    "convert-exaone": {"--to": default(convert, "to")},
    "rehearse": {"--processes": default(prepare, "processes"), "--max-steps": default(prepare, "max_steps"),
                 "--timeout": default(launch, "timeout")},
    "build-learnable-task": {"--seed": default(write_task, "seed"),
                             **{f"--{split}": count for split, count in DEFAULT_SIZES.items()}},
}
# Defaults that exist only on the command line (no library function has one): listed, so a new option's default
# is either compared above or placed here on purpose.
CLI_ONLY = {("build-tiny-model", "--layout"), ("cpu-overlay", "--max-steps"), ("demo", "--workdir"),
            ("demo", "--threads")}


def shown_defaults(command: str) -> dict[str, str]:
    """Option → the text of its ``[default: …]`` in ``tools COMMAND --help``."""
    text = tools_cli(command, "--help").output
    blocks = re.split(r"\n  (?=-)", text[text.index("Options:"):])[1:]
    shown = {}
    for block in blocks:
        flat = " ".join(block.split())
        found = re.search(r"\[default: ([^\]]*)\]", flat)
        if found:  # without the range click adds to a number ("1024; x>=1")
            option = re.match(r"(?:-\w, )?(--[\w-]+)", flat).group(1)
            shown[option] = re.sub(r"; [^;]*x[<>=][^;]*$", "", found.group(1))
    return shown


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_help_shows_the_librarys_defaults(command):
    shown = shown_defaults(command)
    for option, value in LIBRARY.get(command, {}).items():
        assert option in shown, f"tools {command} {option}: --help shows no default (the library's: {value})"
        assert re.match(re.escape(str(value)) + r"(?![\w.])", shown[option]), (
            f"tools {command} {option}: --help says {shown[option]!r}, the library uses {value!r}")
    for option, text in shown.items():
        described = " " in text  # "the model's context": says what happens, is no value
        known = option in LIBRARY.get(command, {}) or (command, option) in CLI_ONLY
        assert known or described or option in ("--system-prompt", "--progress"), (
            f"tools {command} {option}: default {text!r} is not compared with the library's (LIBRARY or CLI_ONLY)")


@pytest.mark.parametrize("command, required", [
    ("infer", ["--ckpt", "m", "--input", DEV, "--output", "o.json"]),
    ("select-checkpoint", ["--run", "r", "--input", DEV]),
])
def test_the_generation_options_are_the_inference_options_fields(command, required):
    """One definition: every field of InferenceOptions is an option of both commands, with the field's help and
    default (the prompt's options are the data commands' own, shared)."""
    params = {param.name: param for param in cli.commands[command].params}
    given = cli.commands[command].make_context(command, [str(arg) for arg in required]).params
    for setting in fields(InferenceOptions):
        assert setting.name in params, f"tools {command}: no option for InferenceOptions.{setting.name}"
        if not setting.metadata.get("prompt"):
            assert params[setting.name].help.startswith(setting.metadata["help"]), setting.name
            assert given[setting.name] == setting.default, setting.name


def test_the_system_prompt_preset_shown_is_the_one_used_without_one():
    for command in ("build-sft-data", "build-dpo-data", "infer", "select-checkpoint"):
        assert SYSTEM_PROMPTS[shown_defaults(command)["--system-prompt"]] == resolve_system_prompt(None)


def test_the_library_uses_those_defaults_too():
    """What the compared values come from is what runs: a scorer built without arguments, the default metrics."""
    assert default(BertScorer, "model") == BERTSCORE_MODEL and default(BleurtScorer, "model") == BLEURT_MODEL
    assert scorers_for(default(score_pairs, "metrics")) == scorers_for(OFFICIAL_PARTS)
