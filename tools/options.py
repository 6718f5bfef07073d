"""Click options shared by several commands — each defined once, here."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import click

from common.errors import UserError
from dataset_builders.cleaning import RULES
from dataset_builders.prompt import DEFAULT_SYSTEM_PROMPT, SYSTEM_PROMPTS

F = Callable[..., Any]


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
        type=click.IntRange(min=1),
        default=None,
        help="Drop utterances from the middle of the conversation (never the [Question] line) so the rendered "
             f"prompt fits in N tokens  [default: {default}]",
    )


def input_option(function: F) -> F:
    return click.option(
        "--input",
        "input_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="NIKL task file (JSON list), e.g. 일상대화요약_train.json.",
    )(function)


def recipe_length_options(function: F) -> F:
    function = click.option(
        "--max-seq-len", type=click.IntRange(min=1), default=None,
        help="Make every row fit in N tokens (prompt + answer + template tokens), as Axolotl's sequence_len "
             "counts them; overrides the recipe's.",
    )(function)
    return click.option(
        "--recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        help="Axolotl recipe whose sequence_len, chat_template and base_model (the default --tokenizer) to use.",
    )(function)


def length_rules_builder(system_prompt: str, clean_rules: tuple[str, ...], tokenizer: str | None,
                         max_prompt_tokens: int | None, recipe: Path | None, max_seq_len: int | None,
                         trust_remote_code: bool = False):
    """The prompt builder and row length limit from the prompt and length options (``--recipe`` gives the
    sequence length, chat template and default tokenizer)."""
    from dataset_builders.prompt import PromptBuilder
    from dataset_builders.tokenizer import load_tokenizer
    from workflow.recipes import length_rules

    chat_template = None
    if recipe is not None:
        rules = length_rules(recipe)
        max_seq_len = max_seq_len or rules.sequence_len
        chat_template = rules.chat_template
        tokenizer = tokenizer or rules.base_model
    if max_seq_len is not None and tokenizer is None:
        raise click.UsageError("--max-seq-len needs --tokenizer (or --recipe) to count tokens with")
    return PromptBuilder(
        system_prompt=system_prompt, clean_rules=clean_rules,
        tokenizer=load_tokenizer(tokenizer, trust_remote_code) if tokenizer else None,
        max_prompt_tokens=max_prompt_tokens, chat_template=chat_template,
    ), max_seq_len


DTYPES = ("auto", "float32", "bfloat16", "float16")


def threads_option(function: F) -> F:
    return click.option(
        "--threads", type=click.IntRange(min=1), default=None,
        help="CPU threads for torch  [default: the CPUs this process may use]",
    )(function)


def generation_options(function: F) -> F:
    """The options that say how a checkpoint is loaded and prompted: shared by `tools infer` and
    `tools select-checkpoint`, so both generate the same way."""
    from generation.batching import DEFAULT_MAX_BATCH_TOKENS, VLLM_DIALOGUES_PER_CALL
    from generation.loader import BACKENDS

    decorators = [
        click.option("--base-model", default=None,
                     help="Base model of a LoRA adapter (default: from adapter_config.json)."),
        click.option("--merge-lora", is_flag=True, help="Merge a LoRA adapter into the base weights before generating."),
        click.option("--backend", type=click.Choice(BACKENDS), default="hf", show_default=True,
                     help="vllm needs the `gpu` extra; same output format."),
        click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own code to run."),
        system_prompt_option,
        clean_option,
        prompt_budget_option("the model's context minus --max-new-tokens"),
        click.option("--max-new-tokens", default=1024, show_default=True, type=click.IntRange(min=1),
                     help="Longest summary, in tokens (the reference system's setting)."),
        click.option("--max-batch-tokens", default=None, type=click.IntRange(min=0),
                     help="Token budget of one generate call: dialogues (longest prompts first) join a batch while "
                          "rows × (longest prompt + --max-new-tokens) fits; halved automatically when memory runs "
                          f"out; 0: no budget  [default: {DEFAULT_MAX_BATCH_TOKENS['cpu']} on the CPU, "
                          f"{DEFAULT_MAX_BATCH_TOKENS['gpu']} on a GPU; vllm: ignored, it schedules its own batches]"),
        click.option("--batch-size", default=None, type=click.IntRange(min=1),
                     help="At most N dialogues per generate call, within --max-batch-tokens  "
                          f"[default: no cap; vllm: {VLLM_DIALOGUES_PER_CALL} per call]"),
        click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
                     help="auto: bfloat16 on CUDA, float32 on CPU."),
        click.option("--device", default="auto", show_default=True,
                     help="auto, cpu, cuda or cuda:N (auto: cuda if available, else cpu)."),
        threads_option,
        click.option("--progress/--no-progress", default=True, show_default=True,
                     help="Show a progress bar (examples/s)."),
        click.option("--max-model-len", type=click.IntRange(min=1), default=None,
                     help="vllm: longest sequence (prompt + summary) to reserve memory for; prompts are budgeted "
                          "to it  [default: the model's context]"),
        click.option("--gpu-memory-utilization", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="vllm: share of GPU memory for weights and KV cache  [default: 0.9]"),
        click.option("--tensor-parallel-size", type=click.IntRange(min=1), default=None,
                     help="vllm: GPUs to split the model over (EXAONE 32B on < 80 GB GPUs)  [default: 1]"),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def inference_options(backend, base_model, merge_lora, dtype, device, trust_remote_code, system_prompt, clean_rules,
                      max_prompt_tokens, batch_size, max_batch_tokens, max_model_len, gpu_memory_utilization,
                      tensor_parallel_size):
    """:class:`generation.pipeline.InferenceOptions` from the values of :func:`generation_options`."""
    from generation.pipeline import InferenceOptions

    given = {"max_model_len": max_model_len, "gpu_memory_utilization": gpu_memory_utilization,
             "tensor_parallel_size": tensor_parallel_size}
    vllm = None
    if backend == "vllm" or any(value is not None for value in given.values()):
        from generation.vllm import VLLMSettings

        vllm = VLLMSettings(**{key: value for key, value in given.items() if value is not None})
    return InferenceOptions(backend=backend, base_model=base_model, merge_lora=merge_lora, dtype=dtype, device=device,
                            trust_remote_code=trust_remote_code, system_prompt=system_prompt,
                            clean_rules=tuple(clean_rules), max_prompt_tokens=max_prompt_tokens,
                            batch_size=batch_size, max_batch_tokens=max_batch_tokens, vllm=vllm)


class OutputFile(click.Path):
    """A file to write: not an existing directory, and not a path ending in a separator (``out/``), which
    would otherwise silently become a file named ``out``."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and value.endswith(("/", "\\")):
            self.fail(f"{value!r} names a directory; give a file name (e.g. {value.rstrip('/')}/result.json)",
                      param, ctx)
        return super().convert(value, param, ctx)


def output_file_option(help_text: str, name: str = "--output", dest: str = "output_path",
                       required: bool = True) -> Callable[[F], F]:
    return click.option(name, dest, required=required, type=OutputFile(), help=help_text)



def metric_model_options(function: F) -> F:
    """Where BERTScore's and BLEURT-20's weights come from: shared by `score`, `build-dpo-data` and
    `select-checkpoint`."""
    from eval.loading import BERTSCORE_MODEL, BLEURT_MODEL

    decorators = [
        click.option("--bertscore-model", default=BERTSCORE_MODEL, show_default=True,
                     help="BERTScore model: a local directory, or a hub id (from the Hugging Face cache, downloaded "
                          "on a connected machine unless HF_HUB_OFFLINE=1)."),
        click.option("--bertscore-layers", type=click.IntRange(min=1), default=None,
                     help="Layer whose output BERTScore uses; known for bert_score's models (9 for the default)."),
        click.option("--bleurt-model", default=BLEURT_MODEL, show_default=True,
                     help="BLEURT-20 PyTorch port (bleurt-pytorch layout): a local directory or a hub id."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def check_output_kind(path: Path, *, candidates: bool, submission_only: bool = False) -> None:
    """A submission is one JSON list (``.json``); candidates are JSONL (``.jsonl``): refuse the mix-up."""
    if candidates and path.suffix == ".json":
        raise UserError(f"--output {path}: candidates are JSONL, one row per dialogue; name the file .jsonl")
    if not candidates and path.suffix == ".jsonl":
        raise UserError(f"--output {path}: the submission is one JSON list, not JSONL; name the file .json"
                        + ("" if submission_only else " (or add --num-candidates N to write candidates)"))
