"""Loading a tokenizer and rendering chat prompts to token ids — the one place both happen."""

from __future__ import annotations

from typing import Any

from common.checkpoint_files import TOKENIZER_MAIN_FILES, has_tokenizer
from common.errors import UserError
from common.paths import MAKES_BASE_MODEL, looks_like_local_path, require_local


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, config: Any = None, *,
                   source: str = "--tokenizer", makes: str = MAKES_BASE_MODEL):
    """``AutoTokenizer.from_pretrained``; a path that is not there (``source`` says where the value came
    from, ``makes`` what creates it) or a directory without tokenizer files is a :class:`UserError` naming
    it, before any hub call. ``config``: the model's config when already loaded (it is not read again)."""
    from pathlib import Path

    path = Path(str(name_or_path)).expanduser()
    if looks_like_local_path(name_or_path):
        require_local(name_or_path, source, makes)
        if path.is_dir() and not has_tokenizer(path):
            raise UserError(f"tokenizer {name_or_path}: the directory holds no tokenizer files "
                            f"({', '.join(TOKENIZER_MAIN_FILES)}); pass the base model's directory instead")
    from transformers import AutoTokenizer

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
