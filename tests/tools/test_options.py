"""tools/options.py and every command's options: each has help and a bounded range (a bad value is one line before
any work), one name per kind of argument, and `--help` shows the defaults the library runs with (compared with the
dataclass, function or constant the library itself uses, so the two cannot drift apart)."""

from __future__ import annotations

import inspect
import re
from dataclasses import fields

import click
import pytest

from dataset_builders.dpo import build_dpo_rows
from dataset_builders.learnable import DEFAULT_SIZES, write_task
from dataset_builders.prompt import SYSTEM_PROMPTS, resolve_system_prompt
from dataset_builders.synthetic import write_split
from eval.bertscore import BertScorer
from eval.bleurt import BleurtScorer
from eval.compare.report import write_report
from eval.compare.statistics import RESAMPLES, SEED
from eval.loading import BERTSCORE_MODEL, BLEURT_MODEL
from eval.metrics import score_pairs
from eval.registry import OFFICIAL_PARTS, scorers_for
from exaone.convert import convert
from exaone.tiny import build_tiny_exaone
from generation.batching import DEFAULT_MAX_BATCH_TOKENS, VLLM_DIALOGUES_PER_CALL
from generation.decoding import Decoding
from generation.options import InferenceOptions
from generation.vllm import VLLMSettings
from helpers import DEV, TEST, TRAIN, tools_cli
from tools.cli import cli
from tools.options import FiniteFloat
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


def numeric_options():
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield name, param


def test_every_numeric_option_has_a_bounded_range():
    unbounded = [f"{name} {param.opts[0]}" for name, param in numeric_options()
                 if (getattr(param.type, "min", None) is None or getattr(param.type, "max", None) is None)]
    assert unbounded == []
    not_finite = [f"{name} {param.opts[0]}" for name, param in numeric_options()
                  if isinstance(param.type, click.types.FloatParamType) and not isinstance(param.type, FiniteFloat)]
    assert not_finite == []
    assert len(list(numeric_options())) >= 40  # every command's, not none


@pytest.mark.parametrize("command, option, value, problem", [
    ("infer", "--temperature", "nan", "nan is not a finite number"),
    ("infer", "--temperature", "inf", "inf is not a finite number"),
    ("infer", "--top-p", "nan", "nan is not a finite number"),
    ("infer", "--top-p", "-inf", "-inf is not a finite number"),
    ("infer", "--gpu-memory-utilization", "nan", "nan is not a finite number"),
    ("infer", "--threads", "100000", "100000 is not in the range 1<=x<=1024"),
    ("infer", "--seed", str(2**64), f"{2**64} is not in the range 0<=x<={2**32 - 1}"),
    ("infer", "--seed", "-1", "-1 is not in the range"),
    ("infer", "--max-new-tokens", str(10**30), f"{10**30} is not in the range 1<=x<="),
    ("build-dpo-data", "--min-margin", "nan", "nan is not a finite number"),
    ("build-tiny-model", "--hidden-size", "9", "hidden size 9: must be a multiple of 8, so each of the 4 attention"),
    ("build-tiny-model", "--hidden-size", "12", "hidden size 12: must be a multiple of 8"),
    ("build-tiny-model", "--hidden-size", "100000", "100000 is not in the range 8<=x<=1024"),
    ("build-tiny-model", "--seed", str(2**40), f"{2**40} is not in the range 0<=x<="),
    ("demo", "--threads", "100000", "100000 is not in the range 1<=x<=1024"),
])
def test_a_bad_value_is_one_line_before_any_work(tmp_path, command, option, value, problem):
    required = {
        "infer": ["--ckpt", tmp_path / "no-model", "--input", TEST, "--output", tmp_path / "out.jsonl",
                  "--num-candidates", "2"],
        "build-dpo-data": ["--input", TRAIN, "--candidates", DEV, "--output", tmp_path / "dpo.jsonl"],
        "build-tiny-model": ["--output-dir", tmp_path / "tiny"],
        "demo": ["--workdir", tmp_path / "demo"],
    }[command]
    result = tools_cli(command, *required, option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}': {problem}" in result.output, result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_every_option_of_every_command_says_what_it_does():
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert (param.help or "").strip(), f"tools {name} {param.opts[0]} has no help text"
        assert "Example" in (command.help or ""), f"tools {name} has no usage example"


@pytest.mark.parametrize("command, dest, args", [
    ("score", "input_path", ["--predictions", DEV]),
    ("infer", "input_path", ["--ckpt", "m", "--output", "o.json"]),
    ("build-tiny-model", "input_paths", ["--output-dir", "m"]),
])
def test_references_is_the_other_name_of_input(command, dest, args):
    """The task file is --input in every command; --references (the file of reference summaries, as `score` and
    `compare` call it) is its other name, listed beside it in --help."""
    context = cli.commands[command].make_context(command, [*args, "--references", str(DEV)])
    assert context.params[dest] in (DEV, (DEV,))
    assert re.search(r"--input, --references (FILE|PATH)", tools_cli(command, "--help").output)


@pytest.mark.parametrize("command, name, args", [
    ("build-dpo-data", "--data", ["--candidates", DEV, "--output", "o.jsonl"]),
    ("select-checkpoint", "--dev", ["--run", "r"]),
    ("build-tiny-model", "--data", ["--output-dir", "m"]),
    ("build-tiny-model", "--output", []),
    ("convert-exaone", "--output", ["--model", "m"]),
    ("build-synthetic-data", "--output", []),
])
def test_names_before_one_per_kind_are_gone(command, name, args):
    """One name per kind of argument: the task file is --input, a folder to write is --output-dir (--output is
    always a file); the names some commands had before are unknown options."""
    with pytest.raises(click.NoSuchOption) as refused:
        cli.commands[command].make_context(command, [*args, name, str(DEV)])
    assert refused.value.option_name == name
