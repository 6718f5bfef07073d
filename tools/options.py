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
