"""FLOPs of a training step on one packed row (→ MFU and HFU), and the formulas in words for the report."""

from __future__ import annotations

from typing import Sequence

from benchmarks.gpu.shapes import Shape


def attention_flops(shape: Shape, segments: Sequence[int]) -> int:
    """Forward attention matmuls of one row: QKᵀ and PV, 2·L²·d each for L tokens and d = heads × head_dim,
    halved by the causal mask → 2·d·L² per layer and dialogue (packing: no attention across dialogues)."""
    width = shape.heads * shape.head_dim
    return shape.layers * 2 * width * sum(length * length for length in segments)


def training_flops(shape: Shape, segments: Sequence[int], *, lora_rank: int | None,
                   checkpointing: bool) -> tuple[int, int]:
    """(model FLOPs, hardware FLOPs) of one training step on one packed row.

    N = matmul parameters (blocks + LM head), T = tokens, A = forward attention FLOPs, N_lora = LoRA
    parameters (r·(in+out) per adapted linear layer):

    * full fine-tune: 6·N·T + 3·A (forward 2N + A; backward 4N + 2A: gradients of activations and weights);
    * LoRA, frozen base: 4·N·T + 6·N_lora·T + 3·A (forward 2N; backward to the activations 2N; no weight
      gradient for frozen weights; the adapters cost 6 FLOPs per parameter like any trained weight).

    Model FLOPs (→ MFU) do not count recomputation; hardware FLOPs (→ HFU) add what gradient checkpointing
    recomputes: the forward of every block, 2·N_blocks·T (+ 2·N_lora·T) + A — not the LM head.
    """
    tokens = sum(segments)
    attention = attention_flops(shape, segments)
    lora = shape.lora_params(lora_rank) if lora_rank else 0
    if lora_rank:
        model = 4 * shape.matmul_params * tokens + 6 * lora * tokens + 3 * attention
    else:
        model = 6 * shape.matmul_params * tokens + 3 * attention
    recompute = (2 * (shape.block_matmul_params + lora) * tokens + attention) if checkpointing else 0
    return model, model + recompute


FLOP_FORMULAS = {
    "N": "matmul parameters: every block's q,k,v,o,gate,up,down weights plus the LM head (tied or not); "
         "the embedding lookup is not a matmul",
    "A": "forward attention FLOPs of a packed row: 2 · layers · (heads·head_dim) · Σ L_i² over its dialogues "
         "(QKᵀ and PV, causal half; no attention across packed dialogues)",
    "full": "6·N·T + 3·A per row of T tokens (forward 2N + A, backward 4N + 2A)",
    "lora": "4·N·T + 6·N_lora·T + 3·A (frozen base: forward 2N, backward to activations 2N, no weight "
            "gradients; N_lora = r·(in+out) per adapted linear)",
    "mfu": "model FLOPs ÷ (seconds per step × device bf16 dense peak); recomputation not counted",
    "hfu": "(model FLOPs + recomputation under gradient checkpointing: 2·N_blocks·T (+2·N_lora·T) + A) ÷ "
           "(seconds per step × peak)",
}
