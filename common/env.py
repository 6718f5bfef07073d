"""The environment that keeps a run local and quiet: no hub downloads, no telemetry, no tracking.

Set for the test suite (``tests/conftest.py``) and for every stage of ``tools demo``, which run with
nothing but local files. A user's own GPU run does not get it: there the base model, BERTScore and
BLEURT weights may come from the hub unless ``HF_HUB_OFFLINE=1`` is set.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",            # never reach the hub: every model is a local directory
    "HF_DATASETS_OFFLINE": "1",
    "AXOLOTL_DO_NOT_TRACK": "1",      # no Axolotl telemetry
    "WANDB_MODE": "disabled",         # no Weights & Biases
    "TOKENIZERS_PARALLELISM": "false",  # no fork warnings from the Rust tokenizers
}


def offline_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`OFFLINE_ENV` on top."""
    return {**(os.environ if base is None else base), **OFFLINE_ENV}
