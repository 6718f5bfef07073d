"""What other commands need to know of an Axolotl recipe: its sequence length, chat template and base model.

`tools build-sft-data --recipe recipes/X.yml` (and `build-dpo-data`) use it so every row fits the length
Axolotl trains at, rendered with the template Axolotl renders with — read from the recipe, not retyped.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
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
