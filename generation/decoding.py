"""What to generate and how generated token ids become the final text.

* :class:`Decoding` — greedy submission mode or ``num_candidates`` sampled candidates.
* :func:`row_seed` / :class:`GumbelSampler` — each (dialogue, candidate) row samples from its own
  generator, so candidates do not depend on batching.
* :func:`stop_token_ids` / :func:`trim_at_stop` — where a row ends.
* :func:`finish_text` / :func:`postprocess` — the one decode both backends use.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

CHAT_TEMPLATE_TOKENS = ("[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]")
# U+FFFD (what a broken byte sequence decodes to) and the C0/C1 control characters other than the
# whitespace ones (tab, newline, carriage return), which the whitespace rule below turns into spaces.
_UNPRINTABLE = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Decoding:
    """What to generate. ``num_candidates=None`` is submission mode: one greedy summary per dialogue."""

    max_new_tokens: int = 1024
    num_candidates: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.num_candidates is not None and self.num_candidates < 1:
            raise ValueError(f"num_candidates must be positive, got {self.num_candidates}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.top_p <= 1:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")

    @property
    def sampling(self) -> bool:
        return self.num_candidates is not None

    @property
    def per_prompt(self) -> int:
        return self.num_candidates or 1

    def settings(self) -> dict[str, Any]:
        """The fields that change outputs (sampling parameters only matter when sampling)."""
        return asdict(self) if self.sampling else {"max_new_tokens": self.max_new_tokens, "greedy": True}


def row_seed(seed: int, example_id: str, candidate: int) -> int:
    """A 63-bit seed for one (example, candidate) row: independent of batching and run order."""
    digest = hashlib.sha256(f"{seed}\0{example_id}\0{candidate}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def postprocess(text: str, special_tokens: Iterable[str] = ()) -> str:
    """The reference clean-up: echoed chat-template/special tokens removed, U+FFFD and control characters
    removed, whitespace runs (newlines included) collapsed to one space, ends stripped. Hangul, Latin,
    digits and punctuation are kept as they are."""
    for token in sorted({*CHAT_TEMPLATE_TOKENS, *special_tokens} - {""}, key=len, reverse=True):
        text = text.replace(token, " ")
    return re.sub(r"\s+", " ", _UNPRINTABLE.sub("", text)).strip()


def finish_text(tokenizer: Any, token_ids: Sequence[int], stop_ids: Iterable[int]) -> str:
    """Generated token ids → the submission text: cut at the first stop token, decoded by our tokenizer
    (``clean_up_tokenization_spaces`` as the tokenizer says), post-processed. Both backends call this, so the
    same tokens always give the same string."""
    ids = trim_at_stop(list(token_ids), stop_ids)
    return postprocess(tokenizer.decode(ids, skip_special_tokens=True), tokenizer.all_special_tokens)


def stop_token_ids(tokenizer: Any, model_eos: int | list[int] | None = None) -> list[int]:
    """EOS of the tokenizer and of the model's generation config, plus ``[|endofturn|]`` if known."""
    ids = [tokenizer.eos_token_id]
    ids += model_eos if isinstance(model_eos, list) else [model_eos]
    endofturn = tokenizer.convert_tokens_to_ids("[|endofturn|]")
    ids.append(endofturn if endofturn != tokenizer.unk_token_id else None)
    return sorted({i for i in ids if isinstance(i, int) and i >= 0})


def trim_at_stop(ids: Sequence[int], stop_ids: Iterable[int]) -> list[int]:
    """New tokens up to (not including) the first stop token; batch padding after it goes too."""
    stops = set(stop_ids)
    for index, token in enumerate(ids):
        if token in stops:
            return list(ids[:index])
    return list(ids)


class GumbelSampler:
    """Temperature + top-p sampling as ``argmax(warped logits + Gumbel noise)`` under greedy search.

    Each row draws its noise from its own generator, so row i's tokens depend only on its seed and
    its own logits — not on which other rows share the batch. Same distribution as multinomial
    sampling from ``softmax(logits / T)`` restricted to the top-p nucleus.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: Any):
        import torch
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])

    def __call__(self, input_ids, scores):
        import torch

        for warper in self.warpers:
            scores = warper(input_ids, scores)
        uniform = torch.stack([
            torch.rand(scores.shape[-1], generator=generator, device=scores.device, dtype=torch.float32)
            for generator in self.generators
        ])
        gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float32).tiny)))
        return scores + gumbel
