"""Minimum-Bayes-risk selection: pick the candidate that agrees most with the others.

For each dialogue, every candidate is scored by its mean similarity to the *other* candidates
(ROUGE-1 F by default) — no reference needed. The candidate with the highest mean wins; ties go to
the earliest candidate, so the order of the candidate files is the tie-break. Candidates may come
from several checkpoints or models (their files merged by id): this is the ensembling top 2024
entries did by hand.
"""

from __future__ import annotations

from typing import Callable, Sequence

# similarity(a, b) -> float, higher is more similar.
Similarity = Callable[[str, str], float]


def mbr_scores(candidates: Sequence[str], similarity: Similarity) -> list[float]:
    """Mean similarity of each candidate to every other one (a lone candidate scores 0)."""
    count = len(candidates)
    if count < 2:
        return [0.0] * count
    matrix = [[0.0] * count for _ in range(count)]
    for i in range(count):
        for j in range(i + 1, count):
            matrix[i][j] = similarity(candidates[i], candidates[j])
            matrix[j][i] = similarity(candidates[j], candidates[i])
    return [sum(row) / (count - 1) for row in matrix]


def mbr_select(candidates: Sequence[str], similarity: Similarity) -> int:
    """Index of the MBR choice among ``candidates`` (must be non-empty)."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    scores = mbr_scores(candidates, similarity)
    return max(range(len(candidates)), key=lambda index: (scores[index], -index))
