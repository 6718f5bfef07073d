"""What the model-based metrics share: their default models and batch sizes, the "cannot run here" error, and
the checks made while loading them. Imported by :mod:`eval.bertscore`, :mod:`eval.bleurt` and :mod:`eval.metrics`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from common.errors import UserError
from common.paths import looks_like_local_path, require_local

BERTSCORE_MODEL = "bert-base-multilingual-cased"
BLEURT_MODEL = "lucadiliello/BLEURT-20"
# Pairs per forward pass (on a GPU when there is one); `tools score --batch-size` overrides both.
BERTSCORE_BATCH_SIZE = 64
BLEURT_BATCH_SIZE = 16  # BLEURT-20's inputs are up to 512 tokens of a 32-layer encoder


class MetricUnavailable(UserError):
    """A model-based metric that cannot run here; the message says which and why, on one line."""


# How to get each metric's weights onto a machine, for the "no such directory" message.
FETCH = {"bertscore": f"on a connected machine: huggingface-cli download {BERTSCORE_MODEL} --local-dir DIR",
         "bleurt": f"on a connected machine: huggingface-cli download {BLEURT_MODEL} --local-dir DIR"}


def require_metric_model(metric: str, name: str, option: str) -> None:
    """A model value that looks like a local path (:func:`common.paths.looks_like_local_path`) but is not
    on disk is a :class:`MetricUnavailable` saying so — before any hub call."""
    require_local(name, f"{metric}: {option}", FETCH[metric], error=MetricUnavailable)


# ---- helpers shared by the model-based metrics ------------------------------------------------------


def describe_load_error(metric: str, name: str, option: str, error: BaseException) -> str:
    """One line: which metric, which model, why it did not load, what to pass instead."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if looks_like_local_path(name) and not Path(name).expanduser().exists():
        why = "no such directory"
    elif offline and not Path(name).expanduser().is_dir():
        why = "not a local directory and not in the Hugging Face cache (HF_HUB_OFFLINE=1)"
    else:
        why = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{metric}: cannot load {name!r}: {why}; pass {option} DIR with local weights"


def check_tokenizer(tokenize: Callable[[str], list[int]], unk_id: int | None, where: str) -> None:
    """Refuse a tokenizer that turns text into unknown tokens only (transformers 5 builds an empty
    WordPiece tokenizer instead of failing when the vocabulary file is missing)."""
    probe = tokenize("두 사람은 주말에 등산을 다녀왔다. They went hiking.")
    if not probe or (unk_id is not None and all(index == unk_id for index in probe)):
        raise MetricUnavailable(f"{where} turns text into unknown tokens only (vocabulary missing?)")
