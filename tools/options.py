"""Click options shared by several commands — each defined once, here."""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import Field
from pathlib import Path
from typing import Any, Callable

import click

from common.devices import MAX_THREADS
from common.errors import UserError
from common.limits import MAX_ROWS, MAX_STEPS, MAX_TOKENS  # noqa: F401  (the commands import them from here)
from dataset_builders.cleaning import RULES
from dataset_builders.prompt import DEFAULT_SYSTEM_PROMPT, SYSTEM_PROMPTS
from eval.registry import DEFAULT_METRIC, NAMES, lookup

F = Callable[..., Any]

SEED_RANGE = click.IntRange(0, 2**32 - 1)  # what every random generator here accepts (numpy's is the narrowest)
THREADS = click.IntRange(1, MAX_THREADS)


class FiniteFloat(click.FloatRange):
    """A float range that also refuses ``nan`` and ``inf`` (a range check alone lets ``nan`` through: every
    comparison with it is false)."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


# The final output of the running command, once known (final_output): Ctrl-C after it was written exits 0.
FINAL_OUTPUT = "tools.final_output"


def final_output(path: Path | str) -> None:
    """Declare the file whose writing completes this command (its last write): a Ctrl-C that lands after it was
    written — while the command prints what it did, or releases its lock — ends it with exit code 0, saying the
    output is complete (tools/cli.py)."""
    click.get_current_context().meta[FINAL_OUTPUT] = Path(path)


def system_prompt_option(function: F) -> F:
    """``--system-prompt NAME`` (a preset, checked: a typo is an error, not a prompt) or
    ``--system-prompt-text TEXT`` (any text); the command receives the result as ``system_prompt``."""

    @functools.wraps(function)
    def merged(*args, system_prompt: str, system_prompt_text: str | None, **kwargs):
        if system_prompt_text is not None:
            if system_prompt != DEFAULT_SYSTEM_PROMPT:
                raise click.UsageError("give --system-prompt NAME or --system-prompt-text TEXT, not both")
            if not system_prompt_text.strip():
                raise click.UsageError("--system-prompt-text is empty")
            system_prompt = system_prompt_text
        return function(*args, system_prompt=system_prompt, **kwargs)

    merged = click.option(
        "--system-prompt-text", default=None, metavar="TEXT",
        help="A system message of your own instead of a preset.",
    )(merged)
    return click.option(
        "--system-prompt", type=click.Choice(list(SYSTEM_PROMPTS), case_sensitive=False),
        default=DEFAULT_SYSTEM_PROMPT, show_default=True,
        help="System message preset (exaone: EXAONE's own; reference: the 2024 reference trainer's).",
    )(merged)


def clean_option(function: F) -> F:
    return click.option(
        "--clean",
        "clean_rules",
        multiple=True,
        type=click.Choice(RULES),
        help="Opt-in cleaning rule for utterances; repeat for several. Nothing is cleaned by default.",
    )(function)


def prompt_budget_option(default: str = "no limit") -> Callable[[F], F]:
    """``--max-prompt-tokens``; ``default`` says what happens without it."""
    return click.option(
        "--max-prompt-tokens",
        type=click.IntRange(1, MAX_TOKENS),
        default=None,
        help="Drop utterances from the middle of the conversation (never the [Question] line) so the rendered "
             f"prompt fits in N tokens  [default: {default}]",
    )


# The other name of --input, accepted wherever the task file is (what it is to `score` and `compare`: the file of
# reference summaries).
TASK_FILE_ALIAS = "--references"


def input_option(help_text: str = "NIKL task file (JSON list), e.g. 일상대화요약_train.json.", *,
                 required: bool = True, multiple: bool = False) -> Callable[[F], F]:
    """``--input``: the NIKL task file, in every command that reads one (``input_path``; ``input_paths`` with
    ``multiple``); ``--references`` is its other name."""
    return click.option("--input", TASK_FILE_ALIAS, "input_paths" if multiple else "input_path",
                        required=required, multiple=multiple, help=help_text,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path))


class OutputFolder(click.Path):
    """A folder to write, built beside itself and renamed into place (``.NAME.partial-PID``, ``.NAME.old-PID``):
    names too long for the file system are refused at once. ``siblings``: suffixes of other folders the
    command builds beside it the same way (``NAME-exaone-layout``)."""

    def __init__(self, siblings: tuple[str, ...] = ()) -> None:
        super().__init__(file_okay=False, path_type=Path)
        self.siblings = siblings

    def convert(self, value, param, ctx):
        from common.files import name_too_long

        path = super().convert(value, param, ctx)
        if problem := name_too_long(path, side_suffixes=self.siblings, kinds=(("partial", False), ("old", False))):
            self.fail(problem, param, ctx)
        return path


def output_dir_option(help_text: str, siblings: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``--output-dir``: a folder to write (``--output`` is always a file)."""
    return click.option("--output-dir", "output_dir", required=True, type=OutputFolder(siblings), help=help_text)


def recipe_length_options(function: F) -> F:
    function = click.option(
        "--max-seq-len", type=click.IntRange(1, MAX_TOKENS), default=None,
        help="Make every row fit in N tokens (prompt + answer + template tokens), as Axolotl's sequence_len "
             "counts them; overrides the recipe's.",
    )(function)
    return click.option(
        "--recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Axolotl recipe whose sequence_len, chat_template and base_model (the default --tokenizer) to use.",
    )(function)


def threads_option(function: F) -> F:
    return click.option(
        "--threads", type=THREADS, default=None,
        help="CPU threads for torch  [default: the CPUs this process may use that other processes leave idle]",
    )(function)


def apply_threads(threads: int | None) -> int:
    """Set torch's CPU threads (:func:`common.devices.use_threads`); when the default leaves CPUs out because
    other processes keep them busy, say so in one line."""
    from common.devices import available_cpus, threads_from_environment, use_threads

    used = use_threads(threads)
    if threads is None and threads_from_environment() is None and used < available_cpus():
        click.echo(f"CPU threads: {used} of {available_cpus()} (other processes keep the rest busy; --threads N to "
                   "choose)", err=True)
    return used


def library_default(owner: Callable[..., Any], name: str) -> Any:
    """The default ``owner`` (a dataclass, or a function) gives ``name``: an option shows and uses the library's
    own value, defined once (as TRL's and Axolotl's parsers take theirs from their dataclasses)."""
    return inspect.signature(owner).parameters[name].default


def run_vllm_where_it_is_installed(ctx, param, value: str) -> str:
    """``--backend vllm`` where this environment has no vLLM but its own environment exists
    (:func:`common.stack.vllm_tools`): the same command line runs there instead, said in one line."""
    if value == "vllm":
        import os
        import sys

        from common.stack import IN_VLLM_VENV_VARIABLE, cannot_run_vllm_venv, unrunnable, vllm_tools

        tools = vllm_tools()
        if tools is not None:
            if problem := unrunnable(tools):
                raise UserError(cannot_run_vllm_venv(tools, problem))
            click.echo(f"vLLM is installed in its own environment: running this command with {tools}", err=True)
            sys.stdout.flush()
            os.environ[IN_VLLM_VENV_VARIABLE] = "1"
            try:
                os.execv(tools, [str(tools), *sys.argv[1:]])
            except OSError as error:  # its interpreter moved or gone (ENOENT), not runnable (EACCES, ENOEXEC)
                del os.environ[IN_VLLM_VENV_VARIABLE]
                raise UserError(cannot_run_vllm_venv(tools, error)) from None
    return value


def inference_option(setting: Field, **extra: Any) -> Callable[[F], F]:
    """The click option of one :class:`~generation.options.InferenceOptions` field, made from what the field says of
    itself (:func:`generation.options.option`): its help, the values it accepts, its default."""
    meta = setting.metadata
    name = "--" + setting.name.replace("_", "-")
    if isinstance(setting.default, bool):
        return click.option(name, is_flag=True, help=meta["help"], **extra)
    bounds = meta["bounds"]
    kind = (click.Choice(meta["choices"]) if meta["choices"] else None if bounds is None
            else FiniteFloat(bounds.low, bounds.high, min_open=bounds.low_open) if bounds.kind is float
            else click.IntRange(bounds.low, bounds.high, min_open=bounds.low_open))
    shown = f"  [default: {meta['shown_default']}]" if meta["shown_default"] else ""
    return click.option(name, type=kind, default=setting.default, show_default=setting.default is not None,
                        help=meta["help"] + shown, **extra)


def generation_options(function: F) -> F:
    """The options that say how a checkpoint is loaded, prompted and batched — one per field of
    :class:`~generation.options.InferenceOptions`, which the command makes of them (``InferenceOptions(**options)``)
    — and ``--max-new-tokens``, ``--threads`` and ``--progress``: shared by `tools infer` and
    `tools select-checkpoint`, so both generate the same way."""
    from dataclasses import fields

    from generation.decoding import Decoding
    from generation.options import InferenceOptions

    prompt = {"system_prompt": system_prompt_option, "clean_rules": clean_option,  # shared with the data commands
              "max_prompt_tokens": prompt_budget_option("the model's context minus --max-new-tokens")}
    before = {  # the options that are no field, beside the fields they go with in --help
        "max_batch_tokens": [click.option(
            "--max-new-tokens", default=library_default(Decoding, "max_new_tokens"), show_default=True,
            type=click.IntRange(1, MAX_TOKENS), help="Longest summary, in tokens (the reference system's setting).")],
        "max_model_len": [threads_option, click.option("--progress/--no-progress", default=True, show_default=True,
                                                       help="Show a progress bar (examples/s).")],
    }
    extra = {"backend": {"callback": run_vllm_where_it_is_installed}}
    decorators = []
    for setting in fields(InferenceOptions):
        decorators += before.get(setting.name, [])
        decorators.append(prompt[setting.name] if setting.metadata.get("prompt")
                          else inference_option(setting, **extra.get(setting.name, {})))
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def quiet_loading(progress: bool) -> None:
    """``--no-progress`` also silences the libraries' weight-loading bars."""
    if not progress:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


class OutputFile(click.Path):
    """A file to write: not an existing directory, and not a path ending in a separator (``out/``), which
    would otherwise silently become a file named ``out``; with a name that fits the file system together with
    the temporary file it is written through (and ``side_suffixes``: the side files the command keeps beside it,
    ``OUTPUT.lock`` …). A device, FIFO or open stream (``/dev/null``, ``/dev/stdout``) is written in place
    (:mod:`common.io`) — or, for a command with side files, refused: they cannot go beside it."""

    def __init__(self, side_suffixes: tuple[str, ...] = ()) -> None:
        super().__init__(dir_okay=False, path_type=Path)
        self.side_suffixes = side_suffixes

    def convert(self, value, param, ctx):
        from common.files import name_too_long
        from common.io import stream_or_device

        if isinstance(value, str) and value.endswith(("/", "\\")):
            self.fail(f"{value!r} names a directory; give a file name (e.g. {value.rstrip('/')}/result.json)",
                      param, ctx)
        path = super().convert(value, param, ctx)
        kind = stream_or_device(path)
        if kind and self.side_suffixes:
            self.fail(f"{value} is {kind}, not a file: this command keeps "
                      f"{' and '.join('OUTPUT' + suffix for suffix in self.side_suffixes)} beside its output; "
                      "give a file path", param, ctx)
        if not kind and (problem := name_too_long(path, side_suffixes=self.side_suffixes)):
            self.fail(problem, param, ctx)
        return path


def output_file_option(help_text: str, name: str = "--output", dest: str = "output_path",
                       required: bool = True, side_suffixes: tuple[str, ...] = ()) -> Callable[[F], F]:
    return click.option(name, dest, required=required, type=OutputFile(side_suffixes), help=help_text)



class MetricName(click.ParamType):
    """A metric of :mod:`eval.registry` — any case, old spellings accepted; with ``several``, a comma-separated list
    (converted to a tuple of names, each once)."""

    name = "metric"

    def __init__(self, several: bool = False) -> None:
        self.several = several

    def get_metavar(self, param, ctx=None) -> str:
        return "NAME,…" if self.several else f"[{'|'.join(NAMES)}]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):  # already converted (a default given as a tuple)
            return value
        names = [name for name in str(value).split(",") if name.strip()] if self.several else [str(value)]
        unknown = [name for name in names if lookup(name) is None]
        if unknown or not names:
            self.fail(f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(NAMES)}", param, ctx)
        found = tuple(dict.fromkeys(lookup(name) for name in names))
        return found if self.several else found[0]


def metric_option(help_text: str) -> Callable[[F], F]:
    """``--metric NAME``: the one metric that ranks (checkpoint selection, DPO pairs)."""
    return click.option("--metric", type=MetricName(), default=DEFAULT_METRIC, show_default=True, help=help_text)


def metric_model_options(function: F) -> F:
    """Where BERTScore's and BLEURT-20's weights come from: shared by `score`, `build-dpo-data` and
    `select-checkpoint`."""
    from eval.loading import BERTSCORE_MODEL, BLEURT_MODEL

    decorators = [
        click.option("--bertscore-model", default=BERTSCORE_MODEL, show_default=True,
                     help="BERTScore model: a local directory, or a hub id (from the Hugging Face cache, downloaded "
                          "on a connected machine unless HF_HUB_OFFLINE=1)."),
        click.option("--bertscore-layers", type=click.IntRange(1, 1024), default=None,
                     help="Layer whose output BERTScore uses; known for bert_score's models (9 for the default)."),
        click.option("--bleurt-model", default=BLEURT_MODEL, show_default=True,
                     help="BLEURT-20 PyTorch port (bleurt-pytorch layout): a local directory or a hub id."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def metric_runtime_options(function: F) -> F:
    """``--batch-size`` and ``--device`` of the model metrics: shared by `score` and `compare`."""
    from eval.loading import BERTSCORE_BATCH_SIZE, BLEURT_BATCH_SIZE

    function = click.option("--device", default=None,
                            help="torch device for the models (default: cuda when present, else cpu).")(function)
    return click.option("--batch-size", type=click.IntRange(1, MAX_ROWS), default=None,
                        help=f"Pairs per forward pass of BERTScore and BLEURT  [default: {BERTSCORE_BATCH_SIZE} for "
                             f"BERTScore, {BLEURT_BATCH_SIZE} for BLEURT]")(function)


def resampling_options(function: F) -> F:
    """``--resamples`` and ``--seed`` of the sign-flip test and the bootstrap interval (:mod:`eval.compare.statistics`): shared
    by `compare` and `select-checkpoint`, checked as they are parsed."""
    from eval.compare.statistics import MAX_RESAMPLES, MIN_RESAMPLES, RESAMPLES, SEED

    function = click.option(
        "--seed", type=SEED_RANGE, default=SEED, show_default=True,
        help="Seed of the random sign patterns and bootstrap resamples: the same seed, the same numbers.")(function)
    return click.option(
        "--resamples", type=click.IntRange(MIN_RESAMPLES, MAX_RESAMPLES), default=RESAMPLES, show_default=True,
        help="Bootstrap resamples of the examples, and random sign patterns of the test when too many examples "
             "differ for an exact p (fewer would make p-values coarse; more: steadier, slower).")(function)


def check_output_kind(path: Path, *, candidates: bool, submission_only: bool = False) -> None:
    """A submission is one JSON list (``.json``); candidates are JSONL (``.jsonl``): refuse the mix-up."""
    if candidates and path.suffix == ".json":
        raise UserError(f"--output {path}: candidates are JSONL, one row per dialogue; name the file .jsonl")
    if not candidates and path.suffix == ".jsonl":
        raise UserError(f"--output {path}: the submission is one JSON list, not JSONL; name the file .json"
                        + ("" if submission_only else " (or add --num-candidates N to write candidates)"))
