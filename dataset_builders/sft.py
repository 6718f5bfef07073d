"""NIKL examples → Axolotl ``chat_template`` SFT rows.

One row per example::

    {"id": "...", "messages": [{"role": "system", "content": ...},
                               {"role": "user", "content": ...},
                               {"role": "assistant", "content": <output>}]}
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder


@dataclass
class BuildStats:
    """What a build did; ``lines()`` renders the summary the commands print."""

    read: int = 0
    written: int = 0
    truncated: int = 0
    prompt_chars: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)

    def add(self, prompt_chars: int, prompt_tokens: int | None, truncated: bool) -> None:
        self.prompt_chars.append(prompt_chars)
        if prompt_tokens is not None:
            self.prompt_tokens.append(prompt_tokens)
        self.truncated += truncated

    def lines(self, builder: PromptBuilder) -> list[str]:
        out = [
            f"examples read: {self.read}",
            f"examples written: {self.written}",
            f"examples truncated: {self.truncated}"
            + (f" (budget {builder.max_prompt_tokens} prompt tokens)" if builder.max_prompt_tokens else ""),
            f"examples cleaned: {builder.cleaning.examples_changed}"
            + (f" (rules: {', '.join(builder.cleaning.rules)})" if builder.cleaning.rules else " (no rules asked for)"),
        ]
        out += [f"  {line}" for line in builder.cleaning.lines()]
        out.append("prompt chars: " + describe(self.prompt_chars))
        if self.prompt_tokens:
            out.append("prompt tokens: " + describe(self.prompt_tokens))
        return out


def describe(values: list[int]) -> str:
    if not values:
        return "n/a"
    return (
        f"min {min(values)} / median {statistics.median(values):g} / "
        f"mean {statistics.fmean(values):.1f} / max {max(values)}"
    )


def sft_row(example: Example, builder: PromptBuilder, stats: BuildStats) -> dict[str, Any]:
    prompt = builder.build(example)
    stats.add(len(prompt.messages[-1]["content"]), prompt.prompt_tokens, prompt.truncated)
    return {"id": example.id, "messages": [*prompt.messages, {"role": "assistant", "content": example.output}]}


def sft_rows(examples: Iterable[Example], builder: PromptBuilder, stats: BuildStats) -> list[dict[str, Any]]:
    rows = []
    for example in examples:
        stats.read += 1
        rows.append(sft_row(example, builder, stats))
    stats.written = len(rows)
    return rows
