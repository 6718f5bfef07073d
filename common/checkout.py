"""Where the repository's own files are: the recipes and the bundled sample data.

`tools demo` runs the recipes in ``recipes/`` and `tools build-tiny-model` trains its tokenizer on the
sample dialogues in ``tests/fixtures/``; both are files of a checkout (``git clone`` + ``pip install -e .``),
not of an installed wheel. :func:`require` says so in one line when they are missing.
"""

from __future__ import annotations

from pathlib import Path

from common.errors import UserError

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
SAMPLE_DATA = REPO / "tests" / "fixtures"


def sample_files(splits: tuple[str, ...] = ("train", "dev", "test")) -> list[Path]:
    """The bundled NIKL-format sample files (text written for this project, not corpus data)."""
    return [require(SAMPLE_DATA / f"일상대화요약_{split}.json", "the bundled sample data") for split in splits]


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path}: {what} is part of a checkout of this repository, not of an installed package; "
                        "run from a clone (git clone …; pip install -e .)")
    return path
