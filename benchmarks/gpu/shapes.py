"""What is measured: the Llama-layout EXAONE shapes, the run profiles, the bf16 peak FLOPs of known GPUs, and
the random-initialised model of a shape."""

from __future__ import annotations

import re
from dataclasses import dataclass

from benchmarks.make_synthetic import SIZES
from generation.batching import DEFAULT_MAX_BATCH_TOKENS

# An assumption (no EXAONE tokenizer offline): 0.5 EXAONE tokens per character of utterance text — about
# 0.43 for colloquial Korean itself plus 0.07 for each line's `화자SD…: ` prefix (~7 tokens × ~20 lines
# per ~2,100 characters) — and 60 tokens for the system prompt, the chat template and the [Question]
# line. Median test prompt ≈ 1,110 tokens, longest ≈ 3,210. Change it with --tokens-per-char.
TOKENS_PER_CHAR = 0.5
PROMPT_OVERHEAD_TOKENS = 60


@dataclass(frozen=True)
class Shape:
    """A Llama-layout decoder (EXAONE 3.x maps onto it one to one)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int
    positions: int
    rope_theta: float
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer of one block: q, k, v, o, gate, up, down."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return [(self.hidden, q), (self.hidden, kv), (self.hidden, kv), (q, self.hidden),
                (self.hidden, self.mlp), (self.hidden, self.mlp), (self.mlp, self.hidden)]

    @property
    def block_matmul_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.linear_shapes())

    @property
    def matmul_params(self) -> int:
        """N of the FLOP formulas: every weight a token is multiplied by — all blocks plus the LM head
        (the embedding lookup is not a matmul; a tied LM head is)."""
        return self.block_matmul_params + self.vocab * self.hidden

    @property
    def params(self) -> int:
        norms = (2 * self.layers + 1) * self.hidden
        return self.block_matmul_params + self.vocab * self.hidden * (1 if self.tied else 2) + norms

    def lora_params(self, rank: int) -> int:
        return self.layers * sum(rank * (i + o) for i, o in self.linear_shapes())

    def llama_config(self):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=self.vocab, hidden_size=self.hidden, intermediate_size=self.mlp,
            num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
            head_dim=self.head_dim, max_position_embeddings=self.positions, rope_theta=self.rope_theta,
            rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=self.tied,
            bos_token_id=1, eos_token_id=None, pad_token_id=0,  # no EOS: every row generates max_new_tokens
            use_cache=True,
        )


EXAONE_30_78B = Shape("EXAONE 3.0 7.8B", layers=32, hidden=4096, heads=32, kv_heads=8, mlp=14336, vocab=102400,
                      positions=4096, rope_theta=500000.0, tied=False)
# EXAONE 3.5 2.4B: 32k positions with llama3 rope scaling in the real config; the scaling changes no FLOP.
EXAONE_35_24B = Shape("EXAONE 3.5 2.4B", layers=30, hidden=2560, heads=32, kv_heads=8, mlp=7168, vocab=102400,
                      positions=32768, rope_theta=1000000.0, tied=True)
TINY_GEN = Shape("tiny 7.8B-like", layers=2, hidden=64, heads=4, kv_heads=2, mlp=224, vocab=2048,
                 positions=4096, rope_theta=500000.0, tied=False)
TINY_FULL = Shape("tiny 2.4B-like", layers=2, hidden=48, heads=4, kv_heads=2, mlp=128, vocab=2048,
                  positions=4096, rope_theta=1000000.0, tied=True)


@dataclass(frozen=True)
class Profile:
    """Everything a run measures; ``--tiny`` swaps in small shapes and counts, never other code."""

    gen_shape: Shape
    full_shape: Shape
    prompts: int = SIZES["test"]    # the test split: one submission
    new_tokens: int = 256
    tokens_per_char: float = TOKENS_PER_CHAR
    prompt_overhead: int = PROMPT_OVERHEAD_TOKENS
    seq_len: int = 4096             # recipes: sequence_len 4096, sample_packing, pad_to_sequence_len
    batch1_examples: int = 8        # batch 1 runs on a length-stratified subset of this many prompts
    fixed_batch: int = 16           # the fixed `tools infer --batch-size` before the token budget
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS["gpu"]  # `tools infer --max-batch-tokens` default on a GPU
    max_batch: int = 512            # the upward budget search stops when a batch would hold this many dialogues
    train_steps: int = 4            # measured steps per training case (after the warm-up steps)
    warmup_steps: int = 1
    lora_rank: int = 16             # recipes/exaone_lora.yml: lora_r 16, lora_alpha 32, lora_dropout 0.05
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_reentrant: bool = True     # recipes/exaone_lora.yml: gradient_checkpointing_kwargs {use_reentrant: true}


DEFAULT_PROFILE = Profile(EXAONE_30_78B, EXAONE_35_24B)
TINY_PROFILE = Profile(TINY_GEN, TINY_FULL, prompts=40, new_tokens=4, tokens_per_char=1 / 64, prompt_overhead=8,
                       seq_len=256, batch1_examples=3, max_batch=64, max_batch_tokens=512, train_steps=2)

# bf16 dense tensor-core peak, TFLOP/s (no sparsity), by torch.cuda.get_device_name(); first match wins.
PEAK_BF16_TFLOPS: list[tuple[str, str, float]] = [
    (r"GH200", "GH200", 989.0),
    (r"H200.*NVL", "H200 NVL", 835.0),
    (r"H200", "H200 SXM", 989.0),
    (r"H100.*NVL", "H100 NVL", 835.0),
    (r"H100.*PCIe", "H100 PCIe", 756.0),
    (r"H100|H800", "H100 SXM", 989.0),
    (r"GB200|B200", "B200", 2250.0),
    (r"A100|A800", "A100", 312.0),
    (r"L40S", "L40S", 362.0),
    (r"L40\b", "L40", 181.0),
    (r"\bL4\b", "L4", 121.0),
    (r"\bA10\b", "A10", 125.0),
    (r"RTX 6000 Ada", "RTX 6000 Ada", 364.0),
    (r"RTX A6000", "RTX A6000", 155.0),
    (r"RTX 4090", "RTX 4090", 165.0),
]


def peak_tflops(device_name: str) -> tuple[float | None, str]:
    """(bf16 dense peak TFLOP/s, which table row) for a CUDA device name; (None, why) when unknown."""
    for pattern, label, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return tflops, f"{label}: {tflops:g} TFLOP/s bf16 dense"
    return None, (f"{device_name!r} is not in PEAK_BF16_TFLOPS (benchmarks/gpu/shapes.py): MFU n/a; "
                  "pass --peak-tflops or add the device")


def build_model(shape: Shape, device: str, dtype, attention: str, seed: int):
    """A random-initialised ``LlamaForCausalLM`` created directly on ``device`` in ``dtype`` (the
    ``torch.device`` context: no CPU copy, no disk)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(shape.llama_config(), dtype=dtype, attn_implementation=attention)
    if next(model.parameters()).device.type != torch.device(device).type:  # a transformers that ignores it
        model = model.to(device)
    return model
