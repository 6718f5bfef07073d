"""NIKL examples → Axolotl ``chat_template`` SFT rows.

One row per example::

    {"id": "...", "messages": [{"role": "system", "content": ...},
                               {"role": "user", "content": ...},
                               {"role": "assistant", "content": <output>}]}

With ``max_seq_len`` every row fits: prompt + summary + the template's tokens ≤ ``max_seq_len``, as Axolotl
counts them, by truncating the conversation (:class:`~dataset_builders.prompt.PromptBuilder`). Axolotl
drops longer rows silently; here a row whose summary alone cannot fit is kept out and named.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from common.errors import UserError
from dataset_builders.nikl import Example
from dataset_builders.prompt import Prompt, PromptBuilder


@dataclass
class BuildStats:
    """What a build did; ``lines()`` renders the summary the commands print."""

    read: int = 0
    written: int = 0
    truncated: int = 0
    dropped_utterances: int = 0
    too_long: list[str] = field(default_factory=list)  # ids kept out: the summary alone does not fit
    prompt_chars: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    row_tokens: list[int] = field(default_factory=list)

    def add(self, prompt: Prompt, row_tokens: int | None = None) -> None:
        self.prompt_chars.append(len(prompt.messages[-1]["content"]))
        if prompt.prompt_tokens is not None:
            self.prompt_tokens.append(prompt.prompt_tokens)
        if row_tokens is not None:
            self.row_tokens.append(row_tokens)
        self.truncated += prompt.truncated
        self.dropped_utterances += prompt.dropped_utterances

    def lines(self, builder: PromptBuilder, max_seq_len: int | None = None) -> list[str]:
        budget = [f"budget {builder.max_prompt_tokens} prompt tokens"] if builder.max_prompt_tokens else []
        budget += [f"rows ≤ {max_seq_len} tokens"] if max_seq_len else []
        out = [
            f"examples read: {self.read}",
            f"examples written: {self.written}",
            f"examples truncated: {self.truncated}" + (f" ({', '.join(budget)}; {self.dropped_utterances} "
                                                       f"utterances dropped from the middle)" if budget else ""),
        ]
        if max_seq_len:
            shown = ", ".join(self.too_long[:10]) + (" …" if len(self.too_long) > 10 else "")
            out.append(f"examples kept out: {len(self.too_long)}"
                       + (f" (the summary alone does not fit in {max_seq_len} tokens: {shown})" if self.too_long else ""))
        out.append(f"examples cleaned: {builder.cleaning.examples_changed}"
                   + (f" (rules: {', '.join(builder.cleaning.rules)})" if builder.cleaning.rules else " (no rules asked for)"))
        out += [f"  {line}" for line in builder.cleaning.lines()]
        out.append("prompt chars: " + describe(self.prompt_chars))
        if self.prompt_tokens:
            out.append("prompt tokens: " + describe(self.prompt_tokens))
        if self.row_tokens:
            out.append("row tokens: " + describe(self.row_tokens))
        return out


def describe(values: list[int]) -> str:
    if not values:
        return "n/a"
    return (
        f"min {min(values)} / median {statistics.median(values):g} / "
        f"mean {statistics.fmean(values):.1f} / max {max(values)}"
    )


def sft_rows(examples: Iterable[Example], builder: PromptBuilder, stats: BuildStats,
             max_seq_len: int | None = None) -> list[dict[str, Any]]:
    """One row per example, in order; with ``max_seq_len`` every row fits (or is kept out and named in
    ``stats.too_long``)."""
    if max_seq_len is not None and builder.tokenizer is None:
        raise UserError("--max-seq-len needs --tokenizer (or --recipe) to count tokens with")
    rows = []
    for example in examples:
        stats.read += 1
        fitted = builder.fit(example, [example.output], max_seq_len)
        if fitted is None:
            stats.too_long.append(example.id)
            continue
        prompt, row_tokens = fitted
        stats.add(prompt, row_tokens)
        rows.append({"id": example.id, "messages": [*prompt.messages, {"role": "assistant", "content": example.output}]})
    stats.written = len(rows)
    return rows
