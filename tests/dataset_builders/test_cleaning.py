"""Each cleaning rule, alone, and the rule that nothing is cleaned by default."""

import pytest

from dataset_builders.cleaning import CleaningReport, clean_conversation
from dataset_builders.nikl import Example, Utterance
from dataset_builders.prompt import PromptBuilder

TURNS = (
    Utterance("A", "어~ 그러니까 음~~ 나는 그~ 아~ 좋아"),
    Utterance("B", "xx에서 만났어 xxx 진짜"),
    Utterance("A", "그래서 그래서 그래서 갔지 box 안에"),
    Utterance("B", ""),
    Utterance("A", "어~"),
)


def texts(turns):
    return [turn.utterance for turn in turns]


def test_fillers():
    report = CleaningReport(["fillers"])
    out = clean_conversation(TURNS, ["fillers"], report)
    assert texts(out) == ["그러니까 나는 좋아", "xx에서 만났어 xxx 진짜", "그래서 그래서 그래서 갔지 box 안에", "", ""]
    assert report.utterances["fillers"] == 2
    assert report.chars["fillers"] == len(TURNS[0].utterance) - len("그러니까 나는 좋아") + 2


def test_xx_keeps_latin_words():
    out = clean_conversation(TURNS, ["xx"])
    assert texts(out)[1] == "에서 만났어 진짜"
    assert "box" in texts(out)[2]


def test_repeats():
    out = clean_conversation(TURNS, ["repeats"])
    assert texts(out)[2] == "그래서 갔지 box 안에"


def test_empty_runs_after_other_rules():
    report = CleaningReport(["empty", "fillers"])
    out = clean_conversation(TURNS, ["empty", "fillers"], report)
    assert len(out) == 3  # the empty one and the filler-only one are dropped
    assert report.utterances["empty"] == 2
    assert report.examples_changed == 1
    assert report.lines()[0].startswith("fillers: changed 2 utterances")
    assert report.lines()[1].startswith("empty: dropped 2 utterances")


def test_all_empty_dialogue_is_kept():
    turns = (Utterance("A", ""), Utterance("B", " "))
    report = CleaningReport(["empty"])
    assert clean_conversation(turns, ["empty"], report) == turns
    assert report.utterances["empty"] == 0


def test_no_cleaning_by_default():
    example = Example("x", TURNS, ("k",), "o")
    user = PromptBuilder().build(example).messages[1]["content"]
    assert "어~ 그러니까 음~~" in user and "xx에서" in user and "화자B: \n" in user


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown cleaning rule"):
        CleaningReport(["typos"])
