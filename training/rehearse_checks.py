"""The checks of a rehearsal (`tools rehearse`): what each rank saw, the training it did, what it saved.

Each check is a function returning a :class:`Check` (a name, pass or fail, and what was found), so a broken
input — a rank that saw another world size, a NaN loss, an empty tensor, a ZeRO-3 partition saved as an
adapter — fails it by name. The rank records are those :class:`training.axolotl_plugins.RehearsalProbe` writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from common.checkpoint_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, SAFETENSORS, SAFETENSORS_INDEX

# The variable naming the folder where RehearsalProbe writes each rank's record (`tools rehearse` sets it).
RANK_RECORDS = "NIKL_REHEARSAL_RECORDS"
GROUP_BACKEND = "gloo"  # the process group's backend on CPU, under DDP and DeepSpeed alike
# The trainer's distributed mode (accelerate's DistributedType), by whether DeepSpeed runs.
DISTRIBUTED_TYPE = {False: "MULTI_CPU", True: "DEEPSPEED"}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def per_rank(ranks: Sequence[dict[str, Any]], key: str) -> str:
    return ", ".join(f"rank {rank['rank']}: {rank.get(key)}" for rank in ranks) or "no rank reported"


def world_size_check(ranks: Sequence[dict[str, Any]], processes: int) -> Check:
    """``processes`` ranks reported, each in a process group of ``processes``."""
    ok = sorted(rank["rank"] for rank in ranks) == list(range(processes)) and all(
        rank["world_size"] == processes for rank in ranks)
    return Check(f"world size {processes} on every rank", ok, per_rank(ranks, "world_size"))


def backend_check(ranks: Sequence[dict[str, Any]], processes: int, deepspeed: bool) -> Check:
    """Each rank in a gloo process group with the trainer distributed — DDP (``MULTI_CPU``) or DeepSpeed — not one
    unsynchronised copy per rank (``NO``); one process without DeepSpeed: not distributed."""
    grouped = processes > 1 or deepspeed
    wanted = DISTRIBUTED_TYPE[deepspeed] if grouped else "NO"
    ok = bool(ranks) and all(rank["distributed_type"] == wanted and (rank["backend"] == GROUP_BACKEND or not grouped)
                             for rank in ranks)
    detail = "; ".join(f"rank {rank['rank']}: {rank['backend']}, {rank['distributed_type']}" for rank in ranks)
    name = f"{GROUP_BACKEND}, {wanted} on every rank" if grouped else "one process, not distributed"
    return Check(name, ok, detail or "no rank reported")


def batches_check(ranks: Sequence[dict[str, Any]]) -> Check:
    ok = bool(ranks) and all(rank["batches"] > 0 for rank in ranks)
    return Check("training batches on every rank", ok, per_rank(ranks, "batches"))


def zero_stage_check(ranks: Sequence[dict[str, Any]], stage: int) -> Check:
    ok = bool(ranks) and all(rank["zero_stage"] == stage for rank in ranks)
    return Check(f"DeepSpeed engine at ZeRO stage {stage}", ok, per_rank(ranks, "zero_stage"))


def steps_check(steps: int) -> Check:
    return Check("optimizer steps > 0", steps > 0, f"{steps} steps")


def losses_check(losses: Sequence[float], steps: int) -> Check:
    """One finite loss per optimizer step."""
    ok = len(losses) == steps > 0 and all(math.isfinite(loss) for loss in losses)
    return Check("a finite loss at every step", ok, " ".join(f"{loss:.6f}" for loss in losses) or "no loss logged")


def tensor_shapes(folder: Path,
                  weights: Sequence[str] = (SAFETENSORS, SAFETENSORS_INDEX)) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor of the safetensors checkpoint in ``folder`` (one file, or sharded with an
    index), read from the headers only."""
    from safetensors import safe_open

    index = folder / weights[1]
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    elif (folder / weights[0]).is_file():
        files = [weights[0]]
    else:
        return {}
    shapes = {}
    for name in files:
        with safe_open(str(folder / name), framework="pt") as handle:
            shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
    return shapes


def full_weights_check(output: Path, base_model: Path) -> Check:
    """The saved model has the base's tensor names and shapes, none of them empty (ZeRO-3 saves the shards'
    placeholders, shape [0], when it does not gather the weights)."""
    name = "saved weights: the base's names and shapes, none empty"
    saved, base = tensor_shapes(output), tensor_shapes(base_model)
    if not saved:
        return Check(name, False, f"no model.safetensors in {output}")
    empty = sorted(key for key, shape in saved.items() if math.prod(shape) == 0)
    missing, extra = sorted(base.keys() - saved.keys()), sorted(saved.keys() - base.keys())
    reshaped = sorted(key for key in saved.keys() & base.keys() if saved[key] != base[key])
    problems = [f"{label}: {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
                for label, keys in (("empty", empty), ("missing", missing), ("not in the base", extra),
                                    ("other shape", reshaped)) if keys]
    return Check(name, not problems, "; ".join(problems) or f"{len(saved)} tensors")


def adapter_check(output: Path, base_model: Path) -> Check:
    """Every saved LoRA tensor is whole: ``lora_A`` is [r, in] and ``lora_B`` [out, r] of the base weight it adapts
    (a ZeRO-3 partition is empty or flat), and there is at least one."""
    name = "saved adapter: whole LoRA tensors, none empty"
    saved = tensor_shapes(output, (ADAPTER_WEIGHTS[0], f"{ADAPTER_WEIGHTS[0]}.index.json"))
    if not saved:
        return Check(name, False, f"no {ADAPTER_WEIGHTS[0]} in {output}")
    rank = json.loads((output / ADAPTER_CONFIG).read_text(encoding="utf-8"))["r"]
    base = tensor_shapes(base_model)
    wrong = []
    for key, shape in saved.items():
        module, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
        out_features, in_features = base.get(f"{module}.weight", (None, None))
        expected = {"A.weight": (rank, in_features), "B.weight": (out_features, rank)}.get(part)
        if math.prod(shape) == 0 or shape != expected:
            wrong.append(f"{key} {list(shape)} (expected {list(expected) if expected else 'a LoRA A/B weight'})")
    detail = "; ".join(wrong[:3]) + (" …" if len(wrong) > 3 else "") if wrong else f"{len(saved)} tensors, r {rank}"
    return Check(name, not wrong, detail)


def loads_check(output: Path) -> Check:
    """transformers loads the saved full model (``from_pretrained`` on the folder)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    name = "transformers loads it"
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(output)
    except Exception as error:  # noqa: BLE001 - any failure to load is the finding
        return Check(name, False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    return Check(name, True, f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")


def generates_check(output: Path, dev_input: Path, predictions: Path, run_tools: Callable[..., None]) -> Check:
    """`tools infer --ckpt OUTPUT` writes a summary for every dialogue of ``dev_input``."""
    name = "`tools infer --ckpt` generates with it"
    try:
        run_tools("infer", "--ckpt", output, "--input", dev_input, "--output", predictions, "--max-new-tokens", 8,
                  "--no-progress")
        written = json.loads(predictions.read_text(encoding="utf-8"))
    except Exception as error:  # noqa: BLE001 - any failure to generate is the finding
        return Check(name, False, f"{type(error).__name__}: {error}")
    expected = len(json.loads(dev_input.read_text(encoding="utf-8")))
    return Check(name, len(written) == expected, f"{len(written)} of {expected} dev dialogues summarised")
