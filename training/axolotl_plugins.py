"""Axolotl plugins: the recipes name the first two under ``plugins:``; the configs of CPU runs add the others.
Axolotl imports them (in every process of a multi-GPU run); this project's code never does.

:class:`AdapterOnlyOutput` — after a LoRA DPO run, Axolotl (0.19 to 0.21) saves the adapter *and* calls
``save_pretrained`` on the base model that TRL injected the LoRA layers into, which writes a second full
copy of the weights (``model.safetensors``, ~15.6 GB for EXAONE 3.0 7.8B) with PEFT-named tensors
(``…q_proj.base_layer.weight``, ``…lora_A.default.weight``) that no loader reads. The plugin deletes that
copy once the run is saved, so an adapter run's folder holds the adapter and nothing that looks like a model.
A real model file (full fine-tune: no adapter beside it, no PEFT names inside) is never touched.

:class:`MultiGpuGuard` — what a run on several GPUs needs and Axolotl (0.21) does not do:

- the loss does not depend on the number of GPUs: Axolotl hard-codes ``average_tokens_across_devices=False``
  (axolotl/core/builders/base.py:762), so each GPU's loss is the mean over its own tokens and the GPUs' means are
  averaged — 8 and 4 GPUs weight the same rows differently. The plugin sets it to True: every token of a
  step counts the same, whatever the GPU count (measured with `tools rehearse`: 2 processes = 1 process with
  twice the gradient accumulation, to the last digit). A no-op on one GPU, and for DPO (a per-pair loss);
- a packed run that leaves a GPU without rows is refused before training: with fewer packed rows than
  processes, transformers ends the run after 0 steps and exits 0 ("not a single sample in your
  epoch_iterator"), having trained nothing.

:class:`InProcessSave` — only in the configs of CPU runs (`tools cpu-overlay`, `tools rehearse`): datasets (5.x)
saves a prepared dataset through a *spawn* pool whenever it is given a process count, one process included
(datasets/arrow_dataset.py:1907), and Axolotl always gives one (axolotl/utils/data/shared.py:502). Each split
then starts a fresh interpreter that imports torch, transformers and Axolotl again to write one shard: ~7 s a
split on a 2-core CPU, more than the whole tiny training. With one process asked for, the plugin writes it in
the calling process instead: the same files, without the second interpreter.

:class:`RehearsalProbe` — only in the config `tools rehearse` derives: in each rank, installs the CPU
multi-process workarounds (:mod:`training.cpu_multiprocess`: active only without GPUs) and writes what the
rank saw — its rank, world size, process-group backend, the trainer's distributed mode, the DeepSpeed ZeRO stage
its engine runs at, its batches, steps and losses — to ``rank-N.json`` in the folder named by the environment
variable :data:`training.rehearse_checks.RANK_RECORDS`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from training.rehearse_checks import RANK_RECORDS

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


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


class MultiGpuGuard(BasePlugin):
    """Tokens averaged across GPUs; a packed run with a GPU left without rows refused (see the module doc)."""

    def get_training_args(self, cfg):  # noqa: ARG002 - Axolotl's hook signature
        # Applied after Axolotl's own arguments (axolotl/core/builders/causal.py:367, rl.py:240): this one wins.
        return {"average_tokens_across_devices": True}

    def post_trainer_create(self, cfg, trainer):
        if cfg.sample_packing and world_size() > 1:
            refuse_ranks_without_rows(trainer, cfg.sequence_len)


def refuse_ranks_without_rows(trainer, sequence_len: int) -> None:
    """Raise when the packed training rows give some process no batch (then every process has none: the
    batches per process are the minimum over the processes). Builds the train dataloader once more, without
    touching the random state the real one is built from."""
    import torch

    with torch.random.fork_rng(devices=[]):
        loader = trainer.get_train_dataloader()
        if len(loader) > 0:
            return
        packer = getattr(loader, "batch_sampler", None)
        batches = len(getattr(packer, "batch_sampler", packer) or [])
    raise ValueError(
        f"sample packing makes {batches} micro-batch(es) of {sequence_len}-token rows, fewer than the {world_size()} "
        "processes: a process would train on nothing, and the run would end after 0 steps with exit status 0. "
        "Train on more rows, lower sequence_len, or use fewer GPUs.")


def save_in_process() -> bool:
    """Make ``datasets.Dataset.save_to_disk(..., num_proc=1)`` write in this process (see the module doc);
    other process counts are left as they are. True when this call installed it (once per process)."""
    from datasets import Dataset

    spawning = Dataset.save_to_disk
    if getattr(spawning, "in_process", False):
        return False

    def save_to_disk(self, dataset_path, *args, num_proc=None, **kwargs):
        return spawning(self, dataset_path, *args, num_proc=None if num_proc == 1 else num_proc, **kwargs)

    save_to_disk.in_process = True
    Dataset.save_to_disk = save_to_disk
    return True


class InProcessSave(BasePlugin):
    """CPU runs: a prepared dataset asked to be saved by one process is saved in this one (see the module doc)."""

    def register(self, cfg):  # noqa: ARG002 - Axolotl's hook signature
        save_in_process()


class RehearsalProbe(BasePlugin):
    """`tools rehearse`: the CPU multi-process workarounds, and each rank's record (see the module doc)."""

    def __init__(self):
        super().__init__()
        self.workarounds: list[str] = []

    def register(self, cfg):
        from training.cpu_multiprocess import apply

        self.workarounds = apply(deepspeed=bool(cfg.get("deepspeed")))
        if self.workarounds:
            LOG.info("CPU multi-process workarounds (training/cpu_multiprocess.py): %s", "; ".join(self.workarounds))

    def add_callbacks_post_trainer(self, cfg, trainer):  # noqa: ARG002 - Axolotl's hook signature
        return [RankRecorder(trainer, Path(os.environ[RANK_RECORDS]), self.workarounds)]


def rank_view(trainer) -> dict[str, Any]:
    """What this process sees of the run: its rank, the process group's size and backend, the trainer's
    distributed mode and token averaging and, under DeepSpeed, the ZeRO stage its engine runs at."""
    import torch.distributed as dist

    grouped = dist.is_available() and dist.is_initialized()
    engine = trainer.model_wrapped
    return {
        "rank": dist.get_rank() if grouped else 0,
        "world_size": dist.get_world_size() if grouped else 1,
        "backend": dist.get_backend() if grouped else None,
        "distributed_type": str(trainer.accelerator.state.distributed_type.value),
        "zero_stage": engine.zero_optimization_stage() if hasattr(engine, "zero_optimization_stage") else None,
        "model": type(engine).__name__,
        "average_tokens_across_devices": trainer.args.average_tokens_across_devices,  # MultiGpuGuard's, as it ran
    }


class RankRecorder(TrainerCallback):
    """Writes ``rank-N.json`` into ``folder`` when training ends: :func:`rank_view` at the start, the batches this
    rank's dataloader gives, the optimizer steps, the loss of each logged step, the workarounds installed."""

    def __init__(self, trainer, folder: Path, workarounds: list[str]) -> None:
        self.trainer, self.folder, self.workarounds = trainer, folder, workarounds
        self.record: dict[str, Any] = {}
        self.losses: list[float] = []

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):  # noqa: ARG002
        self.record = {**rank_view(self.trainer), "batches": len(train_dataloader) if train_dataloader else 0,
                       "workarounds": self.workarounds}

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ARG002
        if logs and "loss" in logs:  # a training step's log (evaluation logs eval_loss, the summary train_loss)
            self.losses.append(float(logs["loss"]))

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ARG002
        from common.io import write_json

        write_json(self.folder / f"rank-{self.record['rank']}.json",
                   {**self.record, "steps": state.global_step, "losses": self.losses})
