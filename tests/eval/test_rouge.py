"""The organisers' ROUGE, pinned on hand-checked Korean pairs.

Each case writes out the Mecab morphemes (mecab-ko-dic, as `mecab.MeCab().morphs` gives them on the
cleaned text) and the counts worked out by hand from them: F = P·R / (0.5·P + 0.5·R) = 2·overlap /
(prediction n-grams + reference n-grams).
"""

import pytest
from mecab import MeCab

from helpers import DEV, TRAIN, load_json
from eval import rouge
from eval.metrics import pair_scorer, rouge1_similarity


def f(overlap, predicted, referenced):
    return 2 * overlap / (predicted + referenced)


CASES = {
    "korean": (
        "두 사람은 시험 이야기를 했다.",
        "두 사람은 영어 학원 이야기를 했다.",
        ["두", "사람", "은", "시험", "이야기", "를", "했", "다"],
        ["두", "사람", "은", "영어", "학원", "이야기", "를", "했", "다"],
        # unigrams: 두 사람 은 이야기 를 했 다 shared; bigrams: 두-사람 사람-은 이야기-를 를-했 했-다
        f(7, 8, 9), f(5, 7, 8),
    ),
    "punctuation, English, case": (
        "SD2100503은 COVID-19 때문에 Zoom으로 수업을 들었다!!",
        "sd2100503은 covid 19 때문에 zoom 수업을 들었다.",
        ["sd", "2100503", "은", "covid", "19", "때문", "에", "zoom", "으로", "수업", "을", "들", "었", "다"],
        ["sd", "2100503", "은", "covid", "19", "때문", "에", "zoom", "수업", "을", "들", "었", "다"],
        # every reference morpheme is in the prediction; bigrams lost: zoom-으로 으로-수업 / zoom-수업
        f(13, 14, 13), f(11, 13, 12),
    ),
    "digits, repeated tokens": (
        "SD2100503과 SD2100504는 2024년 3월에 만났다.",
        "SD2100503과 SD2100504는 3월 초에 만났다.",
        ["sd", "2100503", "과", "sd", "2100504", "는", "2024", "년", "3", "월", "에", "만났", "다"],
        ["sd", "2100503", "과", "sd", "2100504", "는", "3", "월", "초", "에", "만났", "다"],
        # sd counts twice on both sides; bigrams shared: sd-2100503 2100503-과 과-sd sd-2100504
        # 2100504-는 3-월 에-만났 만났-다
        f(11, 13, 12), f(8, 12, 11),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_morphemes_are_mecab_on_the_cleaned_text(name):
    prediction, reference, prediction_morphs, reference_morphs, _, _ = CASES[name]
    assert list(rouge.tokenize(prediction)) == prediction_morphs
    assert list(rouge.tokenize(reference)) == reference_morphs


@pytest.mark.parametrize("name", CASES)
def test_rouge_1_and_2_by_hand(name):
    prediction, reference, _, _, rouge1, rouge2 = CASES[name]
    scores = rouge.score_pair(prediction, reference)
    assert scores["rouge1"].fmeasure == pytest.approx(rouge1, rel=1e-12)
    assert scores["rouge2"].fmeasure == pytest.approx(rouge2, rel=1e-12)


def test_precision_recall_and_formula():
    score = rouge.score_pair(*CASES["punctuation, English, case"][:2])["rouge1"]
    assert (score.precision, score.recall) == (13 / 14, 1.0)
    assert score.fmeasure == score.precision * score.recall / (0.5 * score.precision + 0.5 * score.recall)


def test_ngram_counts_are_rouge_scores():
    from rouge_score.rouge_scorer import _create_ngrams

    tokens = rouge.tokenize(CASES["digits, repeated tokens"][0])
    for n in (1, 2, 3):
        assert rouge.ngrams(tokens, n) == _create_ngrams(tokens, n)


def test_fast_tokenizer_matches_mecab_morphs():
    mecab = MeCab()
    texts = [item["output"] for item in load_json(DEV) + load_json(TRAIN)]
    for text in texts:
        cleaned = rouge._REMOVE_CHARS.sub(" ", text.lower()).strip()
        assert list(rouge.tokenize(text)) == mecab.morphs(cleaned)


def test_newlines_join_for_rouge_n_and_split_for_rouge_l():
    # ["포도", "수박", "사과", "배"] vs ["사과", "배", "포도", "수박"]: ROUGE-1 = 1, bigrams shared: 포도-수박 사과-배
    one_line = rouge.score_pair("포도 수박 사과 배", "사과 배 포도 수박")
    two_lines = rouge.score_pair("포도 수박\n사과 배", "사과 배 포도 수박")
    for scores in (one_line, two_lines):
        assert scores["rouge1"].fmeasure == 1.0
        assert scores["rouge2"].fmeasure == pytest.approx(f(2, 3, 3))
    # LCS of the whole line is 사과 배 (or 포도 수박): 2 of 4; per sentence the two LCS paths cover all 4.
    assert one_line["rougeL"].fmeasure == pytest.approx(f(2, 4, 4))
    assert two_lines["rougeL"].fmeasure == 1.0


def test_rouge_l_spends_each_prediction_token_once():
    # Both reference sentences find 사과 in the one-token prediction, which can be spent only once.
    score = rouge.score_pair("사과", "사과\n사과")["rougeL"]
    assert (score.precision, score.recall) == (1.0, 0.5)


def test_rouge_l_single_sentence_is_lcs():
    prediction, reference = CASES["korean"][:2]
    assert rouge.score_pair(prediction, reference)["rougeL"].fmeasure == pytest.approx(f(7, 8, 9))


@pytest.mark.parametrize("prediction", ["", "   ", "!!! ...", "\n"])
def test_empty_prediction_scores_zero(prediction):
    scores = rouge.score_pair(prediction, "두 사람은 시험 이야기를 했다.")
    assert all(score == (0.0, 0.0, 0.0) for score in scores.values())


def test_first_1000_whitespace_words_only():
    reference = "사과 " * 1000 + "배"
    assert rouge.score_pair("배", reference)["rouge1"].fmeasure == 0.0  # 배 is word 1001
    assert rouge.score_pair("배", reference)["rougeL"].fmeasure == 0.0
    assert rouge.score_pair("배", "사과 " * 999 + "배")["rouge1"].fmeasure == pytest.approx(f(1, 1, 1000))


def test_corpus_score_is_mean_of_per_example_f():
    pairs = [CASES["korean"][:2], ("", "두 사람은 시험 이야기를 했다.")]
    per_example = rouge.rouge_f(*zip(*pairs))["rouge1"]
    assert per_example == pytest.approx([f(7, 8, 9), 0.0])
    assert rouge.corpus_mean(per_example) == pytest.approx(f(7, 8, 9) / 2)  # pooled counts would give 14/25


def test_reference_is_tokenized_once():
    reference = "두 사람은 동네 도서관에 새로 생긴 열람실 이야기를 했다."
    assert rouge.prepare(reference) is rouge.prepare(reference)


def test_pair_scorer_and_similarity_are_0_to_100():
    prediction, reference = CASES["korean"][:2]
    assert pair_scorer("rouge1")([prediction, reference], [reference, reference]) == pytest.approx(
        [100 * f(7, 8, 9), 100.0])
    similarity = rouge1_similarity()
    assert similarity(prediction, reference) == similarity(reference, prediction) == pytest.approx(100 * f(7, 8, 9))


def test_unknown_variant_and_length_mismatch():
    with pytest.raises(ValueError, match="unknown ROUGE variant"):
        rouge.score_pair("a", "b", ["rouge3"])
    with pytest.raises(ValueError, match="1 predictions but 2 references"):
        rouge.rouge_f(["a"], ["b", "c"])
