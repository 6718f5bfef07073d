"""Loading a tokenizer and rendering chat prompts to token ids — the one place both happen."""

from __future__ import annotations

from typing import Any

from common.checkpoint_files import TOKENIZER_MAIN_FILES, has_tokenizer
from common.errors import UserError
from common.paths import looks_like_local_path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, config: Any = None):
    """``AutoTokenizer.from_pretrained``; a path that is not there or a directory without tokenizer files
    is a :class:`UserError` naming it. ``config``: the model's config when already loaded (it is not read again)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    path = Path(str(name_or_path)).expanduser()
    if looks_like_local_path(name_or_path):
        if not path.exists():
            raise UserError(f"tokenizer {name_or_path}: no such directory")
        if path.is_dir() and not has_tokenizer(path):
            raise UserError(f"tokenizer {name_or_path}: the directory holds no tokenizer files "
                            f"({', '.join(TOKENIZER_MAIN_FILES)}); pass the base model's directory instead")
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code,
                                             **({"config": config} if config is not None else {}))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load tokenizer {str(name_or_path)!r}: {error}") from None


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]], *, chat_template: str | None = None,
                    add_generation_prompt: bool = True) -> list[int]:
    """The token ids of ``messages`` as the chat template renders them (with the assistant header) — what
    ``apply_chat_template(tokenize=True)`` gives, without its "longer than the maximum sequence length"
    warning: measuring an over-long prompt is how it gets cut to fit, not a mistake."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         chat_template=chat_template)
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
