"""Training: one packed row per step as the recipes train — the LoRA step (``recipes/exaone_lora.yml``) on the
7.8B-shaped model and a full fine-tune step (AdamW) of the 2.4B shape — timed step by step, with MFU/HFU."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable

from benchmarks.gpu.flops import FLOP_FORMULAS, training_flops
from benchmarks.gpu.shapes import Profile, Shape, build_model
from benchmarks.gpu.timing import Clock, one_line, peak_gib, reset_peak, sync
from benchmarks.gpu.workload import PackedRow

TRAIN_FIELDS = ("case", "status", "shape", "method", "params", "trainable_params", "attention", "dtype",
                "gradient_checkpointing", "optimizer", "packing", "seq_len", "steps_measured", "dialogues_per_row",
                "seconds_per_step", "tokens_per_s", "model_tflops_per_step", "achieved_tflops", "mfu", "hfu",
                "peak_memory_gib", "note")


def train_case(case: str, shape: str, method: str) -> dict[str, Any]:
    return {**dict.fromkeys(TRAIN_FIELDS), "case": case, "status": "not run", "shape": shape,
            "method": method, "note": ""}


def training_cases(profile: Profile) -> dict[str, dict[str, Any]]:
    """The two training cases, by key, in report order."""
    return {
        "lora": train_case(f"LoRA r{profile.lora_rank} α{profile.lora_alpha}, all linear layers",
                           f"{profile.gen_shape.name} (Llama layout)", "LoRA (PEFT), frozen base"),
        "full": train_case("full fine-tune, AdamW", f"{profile.full_shape.name} (Llama layout, tied embeddings)",
                           "full fine-tune, every weight trained"),
    }


def training_section(profile: Profile, cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's ``training`` section: the rows, the step, the FLOP formulas, the cases."""
    return {
        "seq_len": profile.seq_len,
        "rows": "dev-split-like dialogues (prompt + summary + [|endofturn|]) packed into rows of exactly "
                f"{profile.seq_len} tokens, position_ids restarting per dialogue, loss on summaries only",
        "step": "one packed row: forward (bf16 autocast on CUDA) + backward + AdamW step; the recipes "
                "accumulate 8 rows per optimizer step, so the optimizer's share here is an upper bound",
        "flop_formulas": FLOP_FORMULAS,
        "cases": cases,
    }


def training_attention(device: str) -> tuple[str, str]:
    """flash_attention_2 when flash-attn is usable (the recipes' choice), else sdpa — and why."""
    if not device.startswith("cuda"):
        return "sdpa", "sdpa (CPU)"
    try:
        from transformers.utils import is_flash_attn_2_available

        if is_flash_attn_2_available():
            return "flash_attention_2", "flash_attention_2"
    except Exception:  # noqa: BLE001 - an old transformers: treat as unavailable
        pass
    return "sdpa", "sdpa (flash-attn not installed; the recipes ask for flash_attention_2)"


def pad_tokenizer(vocab: int):
    """A two-token tokenizer: all Axolotl's collator needs (``pad``); the rows are token ids already."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1},
                                                                                 unk_token="[UNK]")),
                                   pad_token="[PAD]", unk_token="[UNK]", padding_side="right")


def to_batches(rows: list[PackedRow], seq_len: int) -> tuple[list[dict[str, Any]], str]:
    """Model inputs (CPU tensors) for each row — input_ids, labels, position_ids; no attention_mask, which is
    what lets flash-attn/sdpa keep dialogues apart — built by Axolotl's sample-packing collator when Axolotl
    is installed, else by hand; and which of the two. Done before the phases: importing Axolotl takes seconds."""
    import torch

    by_hand = [{"input_ids": torch.tensor([row.input_ids]), "labels": torch.tensor([row.labels]),
                "position_ids": torch.tensor([row.position_ids])} for row in rows]
    how = "by hand (Axolotl not installed)"
    try:
        from axolotl.utils.collators.batching import V2BatchSamplerDataCollatorForSeq2Seq
    except Exception as error:  # noqa: BLE001 - not installed, or broken: pack by hand
        if not isinstance(error, ImportError):
            how = f"by hand (Axolotl's collator did not import: {one_line(error)})"
    else:
        collator = V2BatchSamplerDataCollatorForSeq2Seq(tokenizer=pad_tokenizer(2), padding=True,
                                                        pad_to_multiple_of=seq_len, return_tensors="pt")
        packed = []
        for row, expected in zip(rows, by_hand):
            features, start = [], 0
            for length in row.segments:
                part = slice(start, start + length)
                features.append({"input_ids": row.input_ids[part], "labels": row.labels[part],
                                 "position_ids": row.position_ids[part]})
                start += length
            batch = collator([features])
            batch = {key: batch[key] for key in ("input_ids", "labels", "position_ids")}  # Axolotl drops the mask
            for key in batch:
                if not torch.equal(batch[key].long(), expected[key]):
                    raise AssertionError(f"Axolotl's collator packed {key} differently from the expected rows")
            packed.append(batch)
        by_hand, how = packed, "Axolotl V2BatchSamplerDataCollatorForSeq2Seq (attention_mask dropped, as Axolotl does)"
    return by_hand, how


def on_device(batches: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    return [{key: value.to(device) for key, value in batch.items()} for batch in batches]


def measure_steps(model, optimizer, batches: list[dict[str, Any]], rows: list[PackedRow], profile: Profile,
                  clock: Clock, case: dict[str, Any], device: str, flops: Callable[[PackedRow], tuple[int, int]],
                  peak: float | None) -> None:
    """Warm-up steps, then measured steps (forward + backward + optimizer step on one packed row each),
    ``case`` updated after every measured step."""
    import torch

    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda")
                else contextlib.nullcontext())
    model.train()
    times: list[float] = []
    model_flops = hardware_flops = tokens = 0
    for step in range(profile.warmup_steps + profile.train_steps):
        if times and not clock.allows(max(times) * 1.2):
            case["note"] = (case["note"] + f" time limit: {len(times)} of {profile.train_steps} steps").strip()
            break
        index = step % len(batches)
        sync(device)
        start = time.perf_counter()
        with autocast:
            loss = model(**batches[index]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        seconds = time.perf_counter() - start
        if not math.isfinite(loss.item()):
            case["note"] = (case["note"] + " non-finite loss").strip()
        if step < profile.warmup_steps:
            continue
        times.append(seconds)
        row_model, row_hardware = flops(rows[index])
        model_flops += row_model
        hardware_flops += row_hardware
        tokens += len(rows[index].input_ids)
        total = sum(times)
        case.update(steps_measured=len(times), seconds_per_step=round(total / len(times), 3),
                    tokens_per_s=round(tokens / total, 1),
                    model_tflops_per_step=round(model_flops / len(times) / 1e12, 4),
                    achieved_tflops=round(model_flops / total / 1e12, 4),
                    mfu=round(model_flops / total / (peak * 1e12), 3) if peak else "n/a",
                    hfu=round(hardware_flops / total / (peak * 1e12), 3) if peak else "n/a",
                    peak_memory_gib=peak_gib(device))


def describe_training(case: dict[str, Any], shape: Shape, rows: list[PackedRow], profile: Profile, device: str,
                      dtype, reentrant: bool) -> str:
    """Fill the case's settings; returns the attention implementation to train with."""
    attention, attention_note = training_attention(device)
    case.update(attention=attention_note, dtype=str(dtype).replace("torch.", ""), params=shape.params,
                gradient_checkpointing="reentrant" if reentrant else "non-reentrant", seq_len=profile.seq_len,
                optimizer="AdamW (fused)" if device.startswith("cuda") else "AdamW",
                dialogues_per_row=round(sum(len(row.segments) for row in rows) / len(rows), 2))
    return attention


def lora_phase(model, shape: Shape, rows: list[PackedRow], packed: tuple[list, str], profile: Profile, clock: Clock,
               case: dict[str, Any], device: str, peak: float | None) -> None:
    """``recipes/exaone_lora.yml``'s step on ``model``: PEFT LoRA on every linear layer, checkpointing."""
    import torch
    from peft import LoraConfig, get_peft_model

    attention = describe_training(case, shape, rows, profile, device, model.dtype, profile.lora_reentrant)
    model.set_attn_implementation(attention)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": profile.lora_reentrant})
    model = get_peft_model(model, LoraConfig(r=profile.lora_rank, lora_alpha=profile.lora_alpha,
                                             lora_dropout=profile.lora_dropout, target_modules="all-linear",
                                             bias="none", task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    case["trainable_params"] = sum(p.numel() for p in trainable)
    if case["trainable_params"] != shape.lora_params(profile.lora_rank):
        case["note"] = f"LoRA params {case['trainable_params']} ≠ formula {shape.lora_params(profile.lora_rank)}"
    optimizer = torch.optim.AdamW(trainable, lr=2e-4, fused=device.startswith("cuda") or None)
    batches, case["packing"] = on_device(packed[0], device), packed[1]
    reset_peak(device)
    measure_steps(model, optimizer, batches, rows, profile, clock, case, device,
                  lambda row: training_flops(shape, row.segments, lora_rank=profile.lora_rank, checkpointing=True),
                  peak)


def full_phase(shape: Shape, rows: list[PackedRow], packed: tuple[list, str], profile: Profile, clock: Clock,
               case: dict[str, Any], device: str, dtype, seed: int, peak: float | None) -> None:
    """A full fine-tune step: every weight trained (bf16, as the recipes load it), checkpointing, AdamW."""
    import torch

    attention = describe_training(case, shape, rows, profile, device, dtype, reentrant=False)  # as exaone_sft.yml
    reset_peak(device)
    model = build_model(shape, device, dtype, attention, seed)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    case["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if case["trainable_params"] != shape.params:
        case["note"] = f"params {case['trainable_params']} ≠ formula {shape.params}"
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=device.startswith("cuda") or None)
    batches, case["packing"] = on_device(packed[0], device), packed[1]
    measure_steps(model, optimizer, batches, rows, profile, clock, case, device,
                  lambda row: training_flops(shape, row.segments, lora_rank=None, checkpointing=True), peak)
