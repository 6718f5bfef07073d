"""Click options shared by several commands — each defined once, here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from dataset_builders.cleaning import RULES
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
    return click.option(
        "--max-prompt-tokens",
        type=click.IntRange(min=1),
        default=None,
        help="Truncate the conversation (never the [Question]) so the rendered prompt fits in N tokens.",
    )(function)


def input_option(function: F) -> F:
    return click.option(
        "--input",
        "input_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="NIKL task file (JSON list), e.g. 일상대화요약_train.json.",
    )(function)
