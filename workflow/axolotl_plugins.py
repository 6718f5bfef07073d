"""Axolotl plugins the recipes name under ``plugins:``; Axolotl imports them, this project's code never does.

:class:`AdapterOnlyOutput` — after a LoRA DPO run, Axolotl (0.19 to 0.21) saves the adapter *and* calls
``save_pretrained`` on the base model that TRL injected the LoRA layers into, which writes a second full
copy of the weights (``model.safetensors``, ~15.6 GB for EXAONE 3.0 7.8B) with PEFT-named tensors
(``…q_proj.base_layer.weight``, ``…lora_A.default.weight``) that no loader reads. The plugin deletes that
copy once the run is saved, so an adapter run's folder holds the adapter and nothing that looks like a model.
A real model file (full fine-tune: no adapter beside it, no PEFT names inside) is never touched.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from axolotl.integrations.base import BasePlugin

LOG = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODEL_WEIGHTS = "model.safetensors"
MODEL_INDEX = "model.safetensors.index.json"
# What PEFT puts into the names of the modules it wraps; never in a plain model's state dict.
PEFT_NAME_PARTS = (".base_layer.", ".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B",
                   ".lora_magnitude_vector")


def _tensor_names(weights: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        return list(handle.keys())


def stray_peft_model_files(output_dir: Path | str) -> list[Path]:
    """The ``model*.safetensors`` files (and their index) beside an adapter whose tensors carry PEFT's names:
    a base model saved with LoRA layers inside. Empty when there is no adapter or the model file is real."""
    folder = Path(output_dir)
    if not (folder / ADAPTER_WEIGHTS).is_file():
        return []
    index = folder / MODEL_INDEX
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        names, files = list(weight_map), sorted({folder / name for name in weight_map.values()}) + [index]
    elif (folder / MODEL_WEIGHTS).is_file():
        names, files = _tensor_names(folder / MODEL_WEIGHTS), [folder / MODEL_WEIGHTS]
    else:
        return []
    if not any(part in name for name in names for part in PEFT_NAME_PARTS):
        return []
    return [path for path in files if path.exists()]


class AdapterOnlyOutput(BasePlugin):
    """Removes the PEFT-named full-weight copy an adapter run leaves beside the adapter (see the module doc)."""

    def post_train(self, cfg, model):  # noqa: ARG002 - Axolotl's hook signature
        # Axolotl calls this hook twice: after training (nothing saved yet) and after the final save.
        if not cfg.adapter or not cfg.output_dir or int(os.environ.get("LOCAL_RANK", "0")) != 0:
            return
        for path in stray_peft_model_files(cfg.output_dir):
            LOG.info("removing %s: the base model with LoRA layers inside, a copy of the weights no loader reads "
                     "(the adapter is %s)", path, ADAPTER_WEIGHTS)
            path.unlink(missing_ok=True)
