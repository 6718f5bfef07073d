"""Pairing strategies, drops and human pairs of the DPO builder (scores given explicitly)."""

import pytest

from common.errors import UserError

from dataset_builders.candidates import is_degenerate
from dataset_builders.dpo import (
    DpoStats,
    build_dpo_rows,
    make_pairs,
    parse_candidates,
    parse_human_pairs,
    usable_candidates,
)
from dataset_builders.nikl import Example, Utterance
from dataset_builders.prompt import PromptBuilder

EXAMPLES = [
    Example("a", (Utterance("SD1", "안녕"), Utterance("SD2", "반가워")), ("인사",), "SD1과 SD2는 인사했다."),
    Example("b", (Utterance("SD3", "밥 먹었어?"),), ("식사",), "SD3은 식사 여부를 물었다."),
]
# A table of scores stands in for the metric so each strategy's choice can be pinned exactly.
SCORES = {"SD1과 SD2는 인사했다.": 100.0, "좋은 요약": 80.0, "보통 요약": 50.0, "나쁜 요약": 10.0,
          "같은 점수 A": 30.0, "같은 점수 B": 30.0, "SD3은 식사 여부를 물었다.": 100.0}


def table_score(texts, references):
    return [SCORES[text] for text in texts]


def build(strategy, candidates, **kwargs):
    return build_dpo_rows(EXAMPLES, candidates, table_score, PromptBuilder(), strategy=strategy, **kwargs)


def test_ref_vs_worst_row_format():
    rows, stats = build("ref-vs-worst", {"a": ["보통 요약", "나쁜 요약", "좋은 요약"]})
    assert rows == [{
        "id": "a",
        "messages": PromptBuilder().build(EXAMPLES[0]).messages,
        "chosen": {"role": "assistant", "content": "SD1과 SD2는 인사했다."},
        "rejected": {"role": "assistant", "content": "나쁜 요약"},
        "score_chosen": 100.0,
        "score_rejected": 10.0,
    }]
    assert stats.prompts == 2 and stats.prompts_with_pairs == 1
    assert stats.dropped == {"no candidates for id": 1}
    assert stats.margins == [90.0]


def test_best_vs_worst():
    rows, _ = build("best-vs-worst", {"a": ["보통 요약", "나쁜 요약", "좋은 요약"], "b": ["같은 점수 A", "같은 점수 B"]})
    assert [(row["id"], row["chosen"]["content"], row["rejected"]["content"]) for row in rows] == [("a", "좋은 요약", "나쁜 요약")]


def test_all_pairs_margin_caps_widest_first():
    stats = DpoStats()
    scored = [("좋은 요약", 80.0), ("보통 요약", 50.0), ("나쁜 요약", 10.0), ("같은 점수 A", 30.0)]
    pairs = make_pairs("ref", scored, "all-pairs-margin", stats, reference_score=0, min_margin=25, max_pairs_per_prompt=2)
    assert [(p.chosen, p.rejected, p.margin) for p in pairs] == [("좋은 요약", "나쁜 요약", 70.0), ("좋은 요약", "같은 점수 A", 50.0)]
    # 6 pairs: 80-50=30 (over cap), 50-10=40 (over cap), 30-10=20 and 50-30=20 (below margin)
    assert stats.dropped == {"over --max-pairs-per-prompt": 2, "margin below --min-margin": 2}


def test_drops_empty_degenerate_duplicate_and_identical():
    stats = DpoStats()
    loop = "그래서 " * 20
    kept = usable_candidates(["", "  ", loop, "좋은 요약", "좋은 요약 ", "나쁜 요약"], stats)
    assert kept == ["좋은 요약", "나쁜 요약"]
    assert stats.dropped == {"empty candidate": 2, "degenerate candidate": 1, "duplicate candidate": 1}
    rows, stats = build("ref-vs-worst", {"a": ["SD1과 SD2는 인사했다."]})
    assert rows == [] and stats.dropped["identical texts"] == 1


def test_ties_are_dropped():
    rows, stats = build("best-vs-worst", {"b": ["같은 점수 A", "같은 점수 B"]})
    assert rows == [] and stats.dropped["tied scores"] == 1


def test_human_pairs_take_precedence():
    human = {"a": [("좋은 요약", "보통 요약")]}
    rows, stats = build("ref-vs-worst", {"a": ["나쁜 요약"], "b": ["나쁜 요약"]}, human=human)
    assert [(row["id"], row["chosen"]["content"], row["rejected"]["content"]) for row in rows] == [
        ("a", "좋은 요약", "보통 요약"), ("b", "SD3은 식사 여부를 물었다.", "나쁜 요약")]
    assert stats.human_pairs == 1


@pytest.mark.parametrize("text, expected", [
    ("SD1과 SD2는 주말에 등산을 가기로 했다.", False),
    ("요약 요약 요약 요약 요약 요약", True),  # a short span looped 5+ times
    ("그는 말했다 " * 3 + "그리고 끝났다", False),
    (" ".join(["그래서 나는 갔다"] * 6), True),  # few distinct word trigrams
])
def test_is_degenerate(text, expected):
    assert is_degenerate(text) is expected


def test_parse_candidates_and_human_errors():
    ids = {"a", "b"}
    assert parse_candidates([{"id": "a", "candidates": ["x"]}, {"id": "a", "candidates": ["y"]}], "c.jsonl", ids) == {"a": ["x", "y"]}
    with pytest.raises(UserError, match=r"c.jsonl: row 1: id 'z' is not in the data file"):
        parse_candidates([{"id": "z", "candidates": []}], "c.jsonl", ids)
    with pytest.raises(UserError, match="'candidates' must be a list of strings"):
        parse_candidates([{"id": "a", "candidates": "x"}], "c.jsonl", ids)
    assert parse_human_pairs([{"id": "a", "chosen": {"role": "assistant", "content": "x"}, "rejected": "y"}], "h", ids) == {"a": [("x", "y")]}
    with pytest.raises(UserError, match="'rejected' must be a non-empty string"):
        parse_human_pairs([{"id": "a", "chosen": "x", "rejected": ""}], "h", ids)
    with pytest.raises(UserError, match="identical"):
        parse_human_pairs([{"id": "a", "chosen": "x", "rejected": "x"}], "h", ids)
