"""A test-only forward pass of EXAONE 3.x, written from the architecture and reading its own layout.

Independent of transformers' Llama code on purpose: it reads ``config.json`` with EXAONE's key names and
the ``transformer.h.N.…`` tensors straight from the safetensors shards, and computes, in float32,

- embeddings ``wte``; per block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``; ``ln_f``; ``lm_head``
  (or ``wte`` when the embeddings are tied);
- RMSNorm: ``w * x / sqrt(mean(x²) + layer_norm_epsilon)``;
- rotary embeddings in the rotate-half layout with the config's ``rope_theta`` and, when present,
  llama3-style ``rope_scaling`` (frequencies below ``original_max_position_embeddings / low_freq_factor``
  divided by ``factor``, a linear blend up to ``… / high_freq_factor``);
- causal grouped-query attention (each key/value head shared by ``heads / kv_heads`` query heads);
- the gated MLP ``c_proj(silu(c_fc_0 x) * c_fc_1 x)``.

If the converter or the Llama layout got any name, key or convention wrong, logits would differ.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import safe_open


class ExaoneReference:
    def __init__(self, directory: Path | str):
        directory = Path(directory)
        self.config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        assert self.config["model_type"] == "exaone", "the reference reads EXAONE's own layout only"
        self.weights: dict[str, torch.Tensor] = {}
        for shard in sorted(directory.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as file:
                self.weights.update({name: file.get_tensor(name).float() for name in file.keys()})

    def w(self, name: str) -> torch.Tensor:
        return self.weights[name]

    def rms_norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        eps = self.config["layer_norm_epsilon"]
        return self.w(name) * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    def inverse_frequencies(self, head_dim: int) -> torch.Tensor:
        theta = self.config["rope_theta"]
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        scaling = self.config.get("rope_scaling")
        if not scaling:
            return inv_freq
        assert scaling["rope_type"] == "llama3", scaling
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        context = scaling["original_max_position_embeddings"]
        scaled = []
        for frequency in inv_freq.tolist():
            wavelength = 2 * math.pi / frequency
            if wavelength < context / high:        # high frequencies: unchanged
                scaled.append(frequency)
            elif wavelength > context / low:       # low frequencies: slowed down by `factor`
                scaled.append(frequency / factor)
            else:                                  # in between: a linear blend of the two
                smooth = (context / wavelength - low) / (high - low)
                scaled.append((1 - smooth) * frequency / factor + smooth * frequency)
        return torch.tensor(scaled, dtype=torch.float64)

    def rotate(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate-half RoPE on ``x`` [heads, seq, head_dim]: dims i and i + head_dim/2 form a pair."""
        head_dim = x.shape[-1]
        angles = positions[:, None].double() * self.inverse_frequencies(head_dim)[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1).float(), torch.cat([angles.sin()] * 2, -1).float()
        first, second = x[..., : head_dim // 2], x[..., head_dim // 2:]
        return x * cos + torch.cat([-second, first], -1) * sin

    def attention(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        config, seq = self.config, x.shape[0]
        heads = config["num_attention_heads"]
        kv_heads = config.get("num_key_value_heads") or heads
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        q = (x @ self.w(prefix + "q_proj.weight").T).view(seq, heads, head_dim).transpose(0, 1)
        k = (x @ self.w(prefix + "k_proj.weight").T).view(seq, kv_heads, head_dim).transpose(0, 1)
        v = (x @ self.w(prefix + "v_proj.weight").T).view(seq, kv_heads, head_dim).transpose(0, 1)
        positions = torch.arange(seq)
        q, k = self.rotate(q, positions), self.rotate(k, positions)
        group = heads // kv_heads
        k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)  # query head h uses kv head h // group
        scores = q @ k.transpose(1, 2) / math.sqrt(head_dim)
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(seq, heads * head_dim)
        return out @ self.w(prefix + "out_proj.weight").T

    def mlp(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        gate = torch.nn.functional.silu(x @ self.w(prefix + "c_fc_0.weight").T)
        return (gate * (x @ self.w(prefix + "c_fc_1.weight").T)) @ self.w(prefix + "c_proj.weight").T

    @torch.no_grad()
    def logits(self, ids: list[int]) -> torch.Tensor:
        """[seq, vocab] float32 logits of one unpadded sequence."""
        assert self.config["activation_function"] == "silu"
        x = self.w("transformer.wte.weight")[torch.tensor(ids)]
        for layer in range(self.config["num_layers"]):
            prefix = f"transformer.h.{layer}."
            x = x + self.attention(self.rms_norm(x, prefix + "ln_1.weight"), prefix + "attn.attention.")
            x = x + self.mlp(self.rms_norm(x, prefix + "ln_2.weight"), prefix + "mlp.")
        x = self.rms_norm(x, "transformer.ln_f.weight")
        head = self.w("transformer.wte.weight" if self.config["tie_word_embeddings"] else "lm_head.weight")
        return x @ head.T

    def greedy(self, ids: list[int], new_tokens: int) -> list[int]:
        """``new_tokens`` argmax tokens after ``ids`` (full recomputation each step; no cache to get wrong)."""
        ids = list(ids)
        for _ in range(new_tokens):
            ids.append(int(self.logits(ids)[-1].argmax()))
        return ids[-new_tokens:]
