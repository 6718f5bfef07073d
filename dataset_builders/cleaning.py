"""Opt-in, named cleaning rules for conversation utterances.

Nothing is cleaned unless asked for: the reference system trained on raw utterances, and reference
summaries were written from them. Each rule is a pure function on one utterance (``empty`` works on
the utterance list). Rules run in the order of :data:`RULES`, whatever order they are asked in.

- ``fillers``: drop stand-alone hesitation fillers written with a tilde (``어~``, ``음~~``, ``그~``, ``아~``).
- ``xx``: drop ``xx``/``xxx`` transcription marks for inaudible speech (``xx에서`` → ``에서``).
- ``repeats``: collapse a word repeated back to back (``그래서 그래서 그래서`` → ``그래서``).
- ``empty``: drop utterances that are empty (after the other rules).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Sequence

from dataset_builders.nikl import Utterance

_FILLER = re.compile(r"(?<!\S)(?:어|음|그|아|에|으|엄|흠|저|뭐)~+(?!\S)")
_XX = re.compile(r"(?<![A-Za-z])[xX]{2,}(?![A-Za-z])")
_REPEAT = re.compile(r"(?<!\S)(\S+)(?:\s+\1)+(?!\S)")
_SPACES = re.compile(r"[ \t]{2,}")


def _tidy(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def remove_fillers(text: str) -> str:
    return _tidy(_FILLER.sub("", text))


def remove_xx(text: str) -> str:
    return _tidy(_XX.sub("", text))


def collapse_repeats(text: str) -> str:
    return _REPEAT.sub(r"\1", text)


TEXT_RULES: dict[str, Callable[[str], str]] = {
    "fillers": remove_fillers,
    "xx": remove_xx,
    "repeats": collapse_repeats,
}
RULES = (*TEXT_RULES, "empty")


class CleaningReport:
    """Counts, per rule, the utterances it changed (or dropped) and the characters it removed."""

    def __init__(self, rules: Sequence[str]) -> None:
        unknown = [rule for rule in rules if rule not in RULES]
        if unknown:
            raise ValueError(f"unknown cleaning rule(s) {', '.join(unknown)}; choose from {', '.join(RULES)}")
        self.rules = [rule for rule in RULES if rule in rules]
        self.utterances: Counter[str] = Counter()
        self.chars: Counter[str] = Counter()
        self.examples_changed = 0

    def lines(self) -> list[str]:
        verb = {"empty": "dropped"}
        return [
            f"{rule}: {verb.get(rule, 'changed')} {self.utterances[rule]} utterances, removed {self.chars[rule]} chars"
            for rule in self.rules
        ]


def clean_conversation(
    conversation: Sequence[Utterance], rules: Sequence[str], report: CleaningReport | None = None
) -> tuple[Utterance, ...]:
    """Apply the named rules to every utterance; update ``report`` when given."""
    report = report or CleaningReport(rules)
    utterances: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    cleaned = []
    for turn in conversation:
        text = turn.utterance
        for rule in report.rules:
            if rule == "empty":
                continue
            new = TEXT_RULES[rule](text)
            if new != text:
                utterances[rule] += 1
                chars[rule] += len(text) - len(new)
                text = new
        if "empty" in report.rules and not text.strip():
            utterances["empty"] += 1
            chars["empty"] += len(text)
            continue
        cleaned.append(Utterance(turn.speaker, text))
    if not cleaned:  # never hand on an empty dialogue: keep this one as it was
        return tuple(conversation)
    report.utterances.update(utterances)
    report.chars.update(chars)
    report.examples_changed += bool(utterances)
    return tuple(cleaned)
