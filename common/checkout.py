"""Where the repository's own files are: `tools demo` runs the recipes in ``recipes/``, files of a checkout
(``git clone`` + ``pip install -e .``), not of an installed wheel. :func:`require` says so in one line when they are
missing. (The sample dialogues are package data: :func:`dataset_builders.nikl.sample_files`.)
"""

from __future__ import annotations

from pathlib import Path

from common.errors import UserError

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path}: {what} is part of a checkout of this repository, not of an installed package; "
                        "run from a clone (git clone …; pip install -e .)")
    return path
