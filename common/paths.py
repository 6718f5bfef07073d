"""One rule for "is this a local path or a Hugging Face hub id?", used by every loader."""

from __future__ import annotations

import os
from pathlib import Path


def looks_like_local_path(name: str | os.PathLike) -> bool:
    """True when ``name`` can only be meant as a path on this machine.

    A hub id is ``name`` or ``org/name``. Anything that exists here, starts with ``.``, ``/`` or ``~``,
    has more than one ``/``, uses the platform's own separator, or whose first part is a directory
    here, is a path.
    """
    text = os.fspath(name)
    if Path(text).expanduser().exists():
        return True
    return (text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)
            or ("/" in text and Path(text.split("/")[0]).is_dir()))


def local_or_hub(name: str | os.PathLike) -> str:
    """An existing local path, absolute; anything else as given (a hub id)."""
    path = Path(os.fspath(name)).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(name)
