"""Which generated candidates are usable at all: the one filter DPO pair building and MBR reranking share.

A candidate is unusable when it is empty (or only whitespace) or degenerate — a repetition loop
(``하하하하하…``, one phrase over and over) that a sampled model sometimes falls into. Such a text must never
be a DPO pair's side or the submitted summary, and a loop must not win MBR by agreeing with itself.
"""

from __future__ import annotations

import re

_CHAR_LOOP = re.compile(r"(.{3,}?)\1{4,}", re.DOTALL)
_SAME_CHAR = re.compile(r"(.)\1{9,}", re.DOTALL)  # one character 10+ times: 하하하하하하하하하하


def is_degenerate(text: str, *, min_words: int = 12, min_distinct_trigrams: float = 0.5) -> bool:
    """True for repetition loops: a span of 3+ characters repeated 5+ times back to back, one character
    10+ times, or a text whose word trigrams are mostly repeats (fewer than half distinct once it has
    ``min_words`` words)."""
    if _CHAR_LOOP.search(text) or _SAME_CHAR.search(text):
        return True
    words = text.split()
    if len(words) < min_words:
        return False
    trigrams = list(zip(words, words[1:], words[2:]))
    return len(set(trigrams)) / len(trigrams) < min_distinct_trigrams


def unusable_reason(text: str) -> str | None:
    """``"empty"``, ``"degenerate"``, or ``None`` for a usable candidate."""
    if not text.strip():
        return "empty"
    if is_degenerate(text.strip()):
        return "degenerate"
    return None
