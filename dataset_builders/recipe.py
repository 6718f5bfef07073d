"""Reading an Axolotl recipe, and what the data commands need of it: its sequence length, chat template and base
model — and the prompt builder for rows that must fit it.

`tools build-sft-data --recipe recipes/X.yml` (and `build-dpo-data`) use it so every row fits the length
Axolotl trains at, rendered with the template Axolotl renders with — read from the recipe, not retyped. `tools
cpu-overlay` reads the recipes it derives from through :func:`load_recipe` too.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.errors import UserError
from common.io import refuse_writing_into
from common.paths import MAKES_BASE_MODEL
from common.tokenizer import load_tokenizer
from dataset_builders.prompt import PromptBuilder

TOKENIZER_DEFAULT = "tokenizer_default"  # Axolotl: use the tokenizer's own chat template


class RecipeError(UserError):
    """The recipe cannot be read as one (missing, not YAML, not an Axolotl recipe); the message says why."""


def load_recipe(recipe_path: Path | str) -> dict[str, Any]:
    """Read a recipe YAML into a dict, with a one-line error naming the file for every way it can fail."""
    import yaml

    path = Path(recipe_path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise RecipeError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a YAML mapping of Axolotl keys, got {type(data).__name__}")
    datasets = data.get("datasets")
    if not isinstance(datasets, list) or len(datasets) != 1 or not isinstance(datasets[0], dict):
        raise RecipeError(f"{path}: expected exactly one entry under `datasets:` (the one file of rows it trains on)")
    return data


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
