"""What other commands need to know of an Axolotl recipe: its sequence length, chat template and base model —
and the prompt builder for rows that must fit it.

`tools build-sft-data --recipe recipes/X.yml` (and `build-dpo-data`) use it so every row fits the length
Axolotl trains at, rendered with the template Axolotl renders with — read from the recipe, not retyped.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from common.errors import UserError
from common.io import refuse_writing_into
from common.paths import MAKES_BASE_MODEL
from common.tokenizer import load_tokenizer
from dataset_builders.prompt import PromptBuilder
from workflow.cpu_overlay import load_recipe

TOKENIZER_DEFAULT = "tokenizer_default"  # Axolotl: use the tokenizer's own chat template


@dataclass(frozen=True)
class RecipeLengthRules:
    sequence_len: int
    chat_template: str | None  # Jinja text; None = the tokenizer's own template
    base_model: str | None


def axolotl_chat_template(name: str) -> str:
    """A named chat template as the installed Axolotl ships it (read from the package, not imported)."""
    spec = importlib.util.find_spec("axolotl")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"chat_template {name!r} names an Axolotl template, but Axolotl is not installed")
    path = Path(spec.submodule_search_locations[0]) / "utils" / "chat_templates" / "templates" / f"{name}.jinja"
    if not path.is_file():
        raise UserError(f"chat_template {name!r}: Axolotl has no such template ({path.parent})")
    return path.read_text(encoding="utf-8")


def row_prompt_builder(system_prompt: str | None, clean_rules: Sequence[str], tokenizer: str | None,
                       max_prompt_tokens: int | None, recipe: Path | str | None, max_seq_len: int | None,
                       trust_remote_code: bool = False, *, outputs: Mapping[str, Path | None] | None = None
                       ) -> tuple[PromptBuilder, int | None]:
    """The prompt builder and row length limit for SFT or DPO rows (`build-sft-data`, `build-dpo-data`): ``recipe``
    gives the sequence length, the chat template and the default tokenizer (its base model); ``max_seq_len`` and
    ``tokenizer`` override them. ``outputs`` (``{"--output": path}``) may not lie in the tokenizer's folder, and
    a tokenizer path that is not on disk is reported, with where it came from, before any hub call."""
    chat_template = None
    source = "--tokenizer"
    if recipe is not None:
        rules = length_rules(recipe)
        max_seq_len = max_seq_len or rules.sequence_len
        chat_template = rules.chat_template
        if tokenizer is None:
            tokenizer, source = rules.base_model, f"the base_model of {recipe}"
    if max_seq_len is not None and tokenizer is None:
        raise UserError("--max-seq-len needs --tokenizer (or --recipe) to count tokens with")
    refuse_writing_into(outputs or {}, {source: tokenizer})
    makes = MAKES_BASE_MODEL + ("; or pass --tokenizer DIR" if source != "--tokenizer" else "")
    return PromptBuilder(
        system_prompt=system_prompt, clean_rules=clean_rules,
        tokenizer=load_tokenizer(tokenizer, trust_remote_code, source=source, makes=makes) if tokenizer else None,
        max_prompt_tokens=max_prompt_tokens, chat_template=chat_template,
    ), max_seq_len


def length_rules(recipe_path: Path | str) -> RecipeLengthRules:
    recipe = load_recipe(recipe_path)
    sequence_len = recipe.get("sequence_len")
    if not isinstance(sequence_len, int) or sequence_len < 1:
        raise UserError(f"{recipe_path}: `sequence_len` must be a positive integer, got {sequence_len!r}")
    jinja = recipe.get("chat_template_jinja")
    name = recipe.get("chat_template") or TOKENIZER_DEFAULT
    if jinja is None and not name.startswith(TOKENIZER_DEFAULT):
        jinja = axolotl_chat_template(name)
    base = recipe.get("base_model")
    return RecipeLengthRules(sequence_len, jinja, str(base) if base else None)
