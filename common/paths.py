"""One rule for "is this a local path or a Hugging Face hub id?", used by every loader, and one check that a
value meant as a local path exists — made before anything asks the hub about it.

A value that cannot be a hub id but names nothing on disk (``models/EXAONE-3.0-7.8B-Instruct-llama`` before
`tools convert-exaone` has run) would otherwise go to the hub as an id, retry for tens of seconds and end in
the hub's generic error; :func:`require_local` says instead where the value came from, where it was
looked for, and which command makes it.

Relative paths are relative to the current directory — also the base model an adapter records
(``base_model_name_or_path``): Axolotl and PEFT write it as the recipe gives it, relative to the folder
training ran in, which is where a relative recorded base resolves; elsewhere pass ``--base-model``.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import UserError

MODELS_DIR = "models"  # where the recipes and the README put local checkpoints: models/EXAONE-…-llama

# Which command makes what, for the "no such directory" messages.
MAKES_BASE_MODEL = ("`tools convert-exaone --model LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct --output-dir DIR` makes a "
                    "base model folder")
MAKES_CHECKPOINT = "`axolotl train RECIPE` writes a run's output_dir; `tools convert-exaone` makes a base model folder"


def looks_like_local_path(name: str | os.PathLike) -> bool:
    """True when ``name`` can only be meant as a path on this machine.

    A hub id is ``name`` or ``org/name``. Anything that exists here, starts with ``.``, ``/`` or ``~``,
    has more than one ``/``, uses the platform's own separator, starts with ``models/`` (where the recipes
    put local checkpoints), or whose first part is a directory here, is a path.
    """
    text = os.fspath(name)
    if Path(text).expanduser().exists():
        return True
    first = text.split("/")[0]
    return (text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)
            or ("/" in text and (first == MODELS_DIR or Path(first).is_dir())))


def local_or_hub(name: str | os.PathLike) -> str:
    """An existing local path, absolute; anything else as given (a hub id)."""
    path = Path(os.fspath(name)).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(name)


def require_local(name: str | os.PathLike, source: str, makes: str | None = None,
                  error: type[UserError] = UserError) -> str:
    """``name`` unchanged when it exists here or is a hub id; an ``error`` (a :class:`UserError`) when it looks
    like a local path (:func:`looks_like_local_path`) that does not exist. ``source`` says where the value
    came from (``--tokenizer``, ``the base_model of recipes/x.yml``); ``makes``, which command creates it."""
    text = os.fspath(name)
    path = Path(text).expanduser()
    if path.exists() or not looks_like_local_path(text):
        return text
    where = "" if path.is_absolute() else f", relative to {Path.cwd()}"
    raise error(f"{source} {text}: no such directory{where}" + (f" ({makes})" if makes else ""))
