"""NIKL examples → Axolotl ``chat_template`` SFT rows.

One row per example::

    {"id": "...", "messages": [{"role": "system", "content": ...},
                               {"role": "user", "content": ...},
                               {"role": "assistant", "content": <output>}]}

With ``max_seq_len`` every row fits: prompt + summary + the template's tokens ≤ ``max_seq_len``, as Axolotl
counts them, by truncating the conversation (:class:`~dataset_builders.prompt.PromptBuilder`). Axolotl
drops longer rows silently; here a row that cannot keep even the first word of its dialogue beside its
summary is kept out and named — never written with a conversation of bare speaker labels.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

from common.errors import UserError
from dataset_builders.nikl import Example
from dataset_builders.prompt import Prompt, PromptBuilder, words_cut


@dataclass
class BuildStats:
    """What a build did; ``lines()`` renders the summary the commands print."""

    read: int = 0
    written: int = 0
    truncated: int = 0
    dropped_utterances: int = 0
    cut_words: int = 0  # examples whose first word, longer than the budget, was cut
    kept_out: list[str] = field(default_factory=list)  # ids with no room for any dialogue text
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
        self.cut_words += prompt.cut_word

    def lines(self, builder: PromptBuilder, max_seq_len: int | None = None, kept_out_file: object = None) -> list[str]:
        """The summary; ``kept_out_file``: where every kept-out id is listed (named when some are)."""
        budget = [f"budget {builder.max_prompt_tokens} prompt tokens"] if builder.max_prompt_tokens else []
        budget += [f"rows ≤ {max_seq_len} tokens"] if max_seq_len else []
        out = [
            f"examples read: {self.read}",
            f"examples written: {self.written}",
            f"examples truncated: {self.truncated}" + (f" ({', '.join(budget)}; {self.dropped_utterances} "
                                                       f"utterances dropped from the middle"
                                                       + (f"; {words_cut(self.cut_words)}" if self.cut_words else "")
                                                       + ")" if budget else ""),
        ]
        if budget:
            out.append(f"examples kept out: {len(self.kept_out)}" + (
                f" (not even the first word of the dialogue fits{' beside the summary' if max_seq_len else ''} "
                f"at {', '.join(budget)}: {shown_ids(self.kept_out)}"
                + (f"; all {len(self.kept_out)} listed in {kept_out_file}" if kept_out_file else "") + ")"
                if self.kept_out else ""))
        out.append(f"examples cleaned: {builder.cleaning.examples_changed}"
                   + (f" (rules: {', '.join(builder.cleaning.rules)})" if builder.cleaning.rules else " (no rules asked for)"))
        out += [f"  {line}" for line in builder.cleaning.lines()]
        out.append("prompt chars: " + describe(self.prompt_chars))
        if self.prompt_tokens:
            out.append("prompt tokens: " + describe(self.prompt_tokens))
        if self.row_tokens:
            out.append("row tokens: " + describe(self.row_tokens))
        return out


def shown_ids(ids: list[str], limit: int = 10) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


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
    ``stats.kept_out``), as with a prompt budget too small for any dialogue text."""
    if max_seq_len is not None and builder.tokenizer is None:
        raise UserError("--max-seq-len needs --tokenizer (or --recipe) to count tokens with")
    rows = []
    for example in examples:
        stats.read += 1
        fitted = builder.fit(example, [example.output], max_seq_len)
        if fitted is None:
            stats.kept_out.append(example.id)
            continue
        prompt, row_tokens = fitted
        stats.add(prompt, row_tokens)
        rows.append({"id": example.id, "messages": [*prompt.messages, {"role": "assistant", "content": example.output}]})
    stats.written = len(rows)
    return rows
