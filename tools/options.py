"""Click options and helpers shared by several commands — each defined once, here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from dataset_builders.cleaning import RULES
from dataset_builders.nikl import Example, NiklDataError, load_nikl
from dataset_builders.prompt import DEFAULT_SYSTEM_PROMPT, SYSTEM_PROMPTS

F = Callable[..., Any]


def system_prompt_option(function: F) -> F:
    return click.option(
        "--system-prompt",
        default=DEFAULT_SYSTEM_PROMPT,
        show_default=True,
        help=f"System message: a name ({', '.join(SYSTEM_PROMPTS)}) or any custom text.",
    )(function)


def clean_option(function: F) -> F:
    return click.option(
        "--clean",
        "clean_rules",
        multiple=True,
        type=click.Choice(RULES),
        help="Opt-in cleaning rule for utterances; repeat for several. Nothing is cleaned by default.",
    )(function)


def prompt_budget_options(function: F) -> F:
    function = click.option(
        "--max-prompt-tokens",
        type=click.IntRange(min=1),
        default=None,
        help="Truncate the conversation (never the [Question]) so the rendered prompt fits in N tokens.",
    )(function)
    return function


def input_option(function: F) -> F:
    return click.option(
        "--input",
        "input_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="NIKL task file (JSON list), e.g. 일상대화요약_train.json.",
    )(function)


def load_examples(path: Path, *, require_output: bool) -> list[Example]:
    """Load a NIKL file; bad data becomes a one-line click error (exit code 1)."""
    try:
        return load_nikl(path, require_output=require_output)
    except NiklDataError as error:
        raise click.ClickException(str(error)) from None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot load tokenizer {name_or_path!r}: {error}".splitlines()[0]) from None
