"""MBR selection on hand-made candidate sets, with a word-overlap similarity worked out by hand."""

import pytest

from eval.mbr import mbr_scores, mbr_select


def overlap(a: str, b: str) -> float:
    """Share of distinct words in common (Jaccard): easy to check by hand."""
    x, y = set(a.split()), set(b.split())
    return len(x & y) / len(x | y)


def test_consensus_candidate_wins():
    candidates = ["가 나 다 라", "가 나 다 마", "가 나 바 사", "아 자 차 카"]
    # mean similarity: c0 = (3/5 + 2/6 + 0)/3, c1 = (3/5 + 2/6 + 0)/3, c2 = (2/6 + 2/6 + 0)/3, c3 = 0
    scores = mbr_scores(candidates, overlap)
    assert scores == pytest.approx([(3 / 5 + 2 / 6) / 3, (3 / 5 + 2 / 6) / 3, (4 / 6) / 3, 0.0])
    assert mbr_select(candidates, overlap) == 0  # tie between 0 and 1 goes to the earliest


def test_duplicates_reinforce_each_other():
    candidates = ["가 나", "다 라 마", "다 라 마"]
    assert mbr_select(candidates, overlap) == 1


def test_single_and_empty():
    assert mbr_select(["혼자"], overlap) == 0
    with pytest.raises(ValueError):
        mbr_select([], overlap)
