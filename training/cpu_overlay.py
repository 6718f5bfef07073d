"""A shipped GPU recipe → the smallest derived config the real Axolotl runs on CPU (`tools cpu-overlay`).

Tests and `tools demo` run every recipe in ``recipes/`` through Axolotl on a CPU with a tiny model. The
recipe is used as it is except for:

- :data:`CPU_OVERLAY` — what is GPU-only (:data:`GPU_ONLY`, shared with `tools rehearse`), hub/tracking-only
  (:data:`LOCAL_ONLY`) or too big for a smoke run in a recipe, with the reason for each key; and
- the run-specific values :func:`overlay_config` fills in: ``base_model``, the dataset paths,
  ``output_dir``, ``dataset_prepared_path``, ``max_steps`` and a save/eval cadence of ``max_steps`` (or ``save_every``)
  so that a checkpoint is always written. Evaluation runs on ``--eval-data`` when given (it replaces
  the recipe's dev set); without it evaluation is turned off;
- :data:`IN_PROCESS_SAVE` added to the plugins: the prepared data is saved in the training process, not by a
  fresh interpreter per split (training/axolotl_plugins.py says why);
- the overrides a run asks for by name (``--set learning_rate=2e-3``): only keys the recipe has, so a typo
  is an error instead of a key Axolotl ignores; each is listed in the derived config's header.

Everything else — chat template, masking, packing, LoRA/QLoRA, DPO, schedule — is what the GPU run uses.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Sequence

from common.errors import UserError
from common.paths import local_or_hub
from dataset_builders.recipe import load_recipe

REMOVE = object()  # sentinel: drop the key from the derived config

# What a CPU cannot run, and why: switched off by every CPU run of a recipe (`tools cpu-overlay`, `tools rehearse`).
GPU_ONLY: dict[str, tuple[Any, str]] = {
    "flash_attention": (REMOVE, "legacy spelling of attn_implementation: flash_attention_2 (both is an error)"),
    "attn_implementation": ("sdpa", "flash-attn needs CUDA; sdpa still keeps packed samples apart"),
    "bf16": (False, "Axolotl rejects bf16 AMP without a bf16-capable GPU"),
    "fp16": (False, "AMP needs a GPU"),
    "tf32": (False, "a CUDA matmul setting"),
    "lora_mlp_kernel": (False, "Axolotl's fused LoRA kernels are Triton/CUDA only"),
    "lora_qkv_kernel": (False, "Axolotl's fused LoRA kernels are Triton/CUDA only"),
    "lora_o_kernel": (False, "Axolotl's fused LoRA kernels are Triton/CUDA only"),
    "lora_embedding_kernel": (False, "Axolotl's fused LoRA kernels are Triton/CUDA only"),
    "liger_rope": (False, "Liger's kernels are Triton/CUDA only (the plugin itself loads on CPU)"),
    "liger_rms_norm": (False, "Liger's kernels are Triton/CUDA only"),
    "liger_glu_activation": (False, "Liger's kernels are Triton/CUDA only"),
    "liger_fused_linear_cross_entropy": (False, "Liger's kernels are Triton/CUDA only"),
}
# What a local run on the tiny model does without: tracking, hub pushes, hub revisions.
LOCAL_ONLY: dict[str, tuple[Any, str]] = {
    "wandb_project": (REMOVE, "no tracking from a CPU run"),
    "wandb_entity": (REMOVE, "no tracking from a CPU run"),
    "wandb_name": (REMOVE, "no tracking from a CPU run"),
    "use_wandb": (REMOVE, "no tracking from a CPU run"),
    "hub_model_id": (REMOVE, "no hub pushes from a CPU run"),
    "push_dataset_to_hub": (REMOVE, "no hub pushes from a CPU run"),
    "revision_of_model": (REMOVE, "the local tiny model has no hub revisions"),
}

# The smoke run of `tools cpu-overlay`: the above, one process, a few steps. Every other key of a recipe is kept.
CPU_OVERLAY: dict[str, Any] = {
    **{key: value for key, (value, _) in (GPU_ONLY | LOCAL_ONLY).items()},
    "deepspeed": REMOVE,             # one process: `tools rehearse` runs DeepSpeed with several
    "fsdp": REMOVE,                  # FSDP needs torch.distributed with CUDA
    "fsdp_config": REMOVE,
    "fsdp_version": REMOVE,
    "torch_compile": REMOVE,         # compile time would dwarf a 2-step run
    "pad_to_sequence_len": False,    # fixed shapes keep CUDA memory from fragmenting; on CPU they only add tokens
    "dataset_num_proc": 1,           # no worker pool for a handful of rows
    "gradient_accumulation_steps": 1,  # a smoke run needs optimizer steps, not a large batch
    "dataloader_num_workers": 0,
    "dataloader_pin_memory": False,  # pinned memory is for host→GPU copies
    "save_strategy": "steps",        # cadence from --max-steps (see overlay_config): a checkpoint is saved
    "logging_steps": 1,
    "evals_per_epoch": REMOVE,       # replaced by the steps cadence
    "saves_per_epoch": REMOVE,
}
# Added to the plugins of every CPU run's config (here and `tools rehearse`).
IN_PROCESS_SAVE = "training.axolotl_plugins.InProcessSave"


def add_plugin(cfg: dict[str, Any], plugin: str) -> None:
    """Append ``plugin`` to the config's ``plugins`` (once)."""
    cfg["plugins"] = [*(name for name in cfg.get("plugins") or [] if name != plugin), plugin]


def apply_overlay(cfg: dict[str, Any], overlay: dict[str, Any]) -> list[str]:
    """Set (or, for :data:`REMOVE`, drop) each key of ``overlay`` in ``cfg``, in place; returns the keys whose
    value this changed (a key the recipe leaves unset or empty, dropped or switched off, is no change)."""
    changed = []
    for key, value in overlay.items():
        before = cfg.get(key)
        if value is REMOVE:
            cfg.pop(key, None)
        else:
            cfg[key] = value
        if before != cfg.get(key) and not (before in (None, False) and cfg.get(key) in (None, False)):
            changed.append(key)
    return changed


EXPONENT_NUMBER = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")  # 2e-3: a float everywhere but in YAML 1.1
# Keys the overlay sets from its own options (or the CPU list above): not for --set.
RUN_KEYS = ("base_model", "datasets", "test_datasets", "output_dir", "dataset_prepared_path", "max_steps",
            "save_steps", "eval_steps", "val_set_size", "eval_strategy")


class OverlayError(UserError):
    """The recipe cannot be overlaid with these data and settings; the message says why."""


def required_fields(entry: dict[str, Any]) -> tuple[str, ...]:
    """The row fields a recipe's dataset entry reads: messages for SFT; messages, chosen, rejected for DPO."""
    fields = [entry.get("field_messages", "messages")]
    if str(entry.get("type", "")).startswith("chat_template."):  # the preference (DPO) variant
        fields += [entry.get("field_chosen", "chosen"), entry.get("field_rejected", "rejected")]
    return tuple(fields)


def check_rows_fit(entry: dict[str, Any], data: Path | str, option: str, recipe_path: Path | str) -> None:
    """Refuse data whose first row lacks what the recipe reads (SFT rows given to a DPO recipe, or the
    reverse), before Axolotl fails deep inside with a KeyError."""
    from common.io import read_jsonl

    rows = read_jsonl(data)
    if not rows:
        raise OverlayError(f"{option} {data}: no rows")
    missing = [name for name in required_fields(entry) if name not in rows[0]]
    if missing:
        kind = "DPO pairs (tools build-dpo-data)" if len(required_fields(entry)) > 1 else "SFT rows (tools build-sft-data)"
        raise OverlayError(f"{option} {data}: rows have no {', '.join(repr(name) for name in missing)}, but "
                           f"{recipe_path} trains on {kind}")


def overlay_config(
    recipe_path: Path | str,
    *,
    base_model: Path | str,
    train_data: Path | str,
    output_dir: Path | str,
    max_steps: int,
    eval_data: Path | str | None = None,
    prepared_dir: Path | str | None = None,
    save_every: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the CPU config derived from a recipe (see the module docstring for what changes). A checkpoint
    (and, with ``eval_data``, a dev loss) every ``save_every`` steps (default: once, at ``max_steps``);
    ``overrides``: recipe keys to set to other values (:func:`parse_overrides`)."""
    if max_steps < 1:
        raise OverlayError(f"max_steps must be ≥ 1, got {max_steps}")
    save_every = save_every or max_steps
    if not 1 <= save_every <= max_steps:
        raise OverlayError(f"--save-every {save_every} must be between 1 and --max-steps {max_steps}")
    cfg = copy.deepcopy(load_recipe(recipe_path))
    apply_overlay(cfg, CPU_OVERLAY)
    add_plugin(cfg, IN_PROCESS_SAVE)

    for key, value in (overrides or {}).items():
        if key in RUN_KEYS or key in CPU_OVERLAY:
            raise OverlayError(f"--set {key}: the overlay sets {key} itself (use its own option)")
        if key not in cfg:
            raise OverlayError(f"--set {key}: {recipe_path} has no key {key!r}; an override changes a value the "
                               "recipe sets")
        cfg[key] = value
    check_rows_fit(cfg["datasets"][0], train_data, "--train-data", recipe_path)
    if eval_data is not None:
        check_rows_fit((cfg.get("test_datasets") or cfg["datasets"])[0], eval_data, "--eval-data", recipe_path)
    output_dir = Path(output_dir).resolve()
    cfg["base_model"] = local_or_hub(base_model)
    cfg["output_dir"] = str(output_dir)
    cfg["dataset_prepared_path"] = str(Path(prepared_dir).resolve() if prepared_dir else output_dir / "prepared")
    train_entry = cfg["datasets"][0]
    train_entry["path"] = str(Path(train_data).resolve())
    cfg["max_steps"] = max_steps
    cfg["save_steps"] = save_every

    if eval_data is not None:
        # The recipe's dev set (or, for a recipe that holds out val_set_size, its training entry) on new data.
        template = (cfg.get("test_datasets") or [train_entry])[0]
        cfg["test_datasets"] = [{**copy.deepcopy(template), "path": str(Path(eval_data).resolve()), "split": "train"}]
        cfg["val_set_size"] = 0
        cfg["eval_strategy"] = "steps"
        cfg["eval_steps"] = save_every
    else:
        cfg.pop("test_datasets", None)
        cfg["val_set_size"] = 0
        cfg["eval_strategy"] = "no"
        cfg.pop("eval_steps", None)
        for key in ("load_best_model_at_end", "metric_for_best_model", "greater_is_better"):
            cfg.pop(key, None)  # there is nothing to pick the best checkpoint by
    return cfg


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["learning_rate=2e-3", "sample_packing=false"]`` → ``{"learning_rate": 0.002, "sample_packing": False}``:
    each value read as YAML, as the recipe's own values are — and a number in exponent form without a dot
    (``2e-3``, which YAML 1.1 leaves a string) as the number it is."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, equals, text = item.partition("=")
        if not equals or not key.strip():
            raise OverlayError(f"--set {item!r}: expected KEY=VALUE, e.g. learning_rate=2e-3")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", error)
            raise OverlayError(f"--set {item!r}: the value is not valid YAML ({problem})") from None
        if isinstance(value, str) and EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)
        overrides[key.strip()] = value
    return overrides


def describe_overrides(overrides: dict[str, Any], recipe: dict[str, Any]) -> str:
    """``learning_rate 0.002 (recipe: 2e-05), …`` — what a run changed, for logs and tables."""
    return ", ".join(f"{key} {value} (recipe: {recipe.get(key)})" for key, value in overrides.items())


def write_config(cfg: dict[str, Any], path: Path | str, *, recipe: Path | str, overrides: dict[str, Any] | None = None,
                 purpose: str = "`tools cpu-overlay` for a CPU smoke run (training/cpu_overlay.py)") -> Path:
    import yaml

    from common.io import write_text

    header = (f"# Derived from {recipe} by {purpose}.\n"
              "# Not a recipe: edit the recipe, then re-run the command.\n")
    if overrides:
        header += f"# Overrides (--set): {describe_overrides(overrides, load_recipe(recipe))}\n"
    write_text(path, header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return Path(path)
