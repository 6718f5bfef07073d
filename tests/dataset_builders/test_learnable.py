"""The learnable task (`tools build-learnable-task`, dataset_builders/learnable.py): NIKL files, deterministic by
seed, each reference a function of its dialogue, dev and test built from combinations train never has."""

from __future__ import annotations

import json

import pytest

from helpers import tools_cli
from dataset_builders.learnable import (
    DAYS,
    PLACES,
    TOPICS,
    find_detail,
    make_task,
    reference_summary,
    write_task,
)
from dataset_builders.nikl import load_nikl


@pytest.fixture(scope="module")
def task():
    return make_task(seed=0)


def pair_of(example: dict) -> frozenset[str]:
    return frozenset(turn["speaker"] for turn in example["input"]["conversation"])


def topic_place_of(example: dict) -> tuple[int, str]:
    conversation = example["input"]["conversation"]
    topic = next(index for index, (_, opening) in enumerate(TOPICS) if opening == conversation[0]["utterance"])
    return topic, find_detail(conversation)[2]


def test_the_same_seed_gives_the_same_files_and_another_seed_others(tmp_path):
    first = [path.read_bytes() for path in write_task(tmp_path / "a", seed=3, sizes={"train": 40, "dev": 6, "test": 6})]
    again = [path.read_bytes() for path in write_task(tmp_path / "b", seed=3, sizes={"train": 40, "dev": 6, "test": 6})]
    other = [path.read_bytes() for path in write_task(tmp_path / "c", seed=4, sizes={"train": 40, "dev": 6, "test": 6})]
    assert first == again
    assert all(a != b for a, b in zip(first, other))


def test_one_splits_size_does_not_change_anothers_examples():
    assert make_task(0, {"train": 10})["dev"] == make_task(0, {"train": 30})["dev"]


def test_files_are_nikl_task_files_with_the_real_datas_quirks(tmp_path, task):
    paths = write_task(tmp_path, seed=0)
    assert [path.name for path in paths] == [f"일상대화요약_{split}.json" for split in ("train", "dev", "test")]
    train, dev, test = (load_nikl(path) for path in paths)  # the schema every command validates
    assert (len(train), len(dev), len(test)) == (1000, 48, 48)
    assert all(example.output for example in train + dev) and all(example.output == "" for example in test)
    utterances = [turn.utterance for example in train for turn in example.conversation]
    for quirk in ("어~", "음~", "그~", "name1", "name2", "xx", "&company-name&", "&address&"):
        assert any(quirk in text for text in utterances), quirk
    assert "" in utterances  # empty utterances, as in the real train split
    assert {len(example.subject_keyword) for example in train} == {2, 3, 4}
    assert all(len({turn.speaker for turn in example.conversation}) == 2 for example in train)


def test_the_reference_is_a_function_of_the_dialogue(task):
    for example in task["train"] + task["dev"]:
        assert example["output"] == reference_summary(example["input"]["conversation"],
                                                      example["input"]["subject_keyword"])
    example = task["dev"][0]
    conversation = example["input"]["conversation"]
    teller, day, place, _ = find_detail(conversation)
    assert example["output"].startswith(conversation[0]["speaker"])  # the speakers in order of appearance
    assert f"{teller}" in example["output"].split(". ")[1] and f"{day}에 {place}에서" in example["output"]
    # Another day in the dialogue, another summary: the detail is read, not guessed.
    other_day = next(name for name in DAYS if name != day)
    changed = [{**turn, "utterance": turn["utterance"].replace(f"{day}에", f"{other_day}에")} for turn in conversation]
    assert reference_summary(changed, example["input"]["subject_keyword"]) == example["output"].replace(
        f"{day}에", f"{other_day}에")
    detail = next(turn for turn in conversation if day in turn["utterance"] and place in turn["utterance"])
    for broken in ([turn for turn in conversation if turn is not detail], conversation + [detail]):
        with pytest.raises(ValueError, match="exactly one detail"):
            reference_summary(broken, example["input"]["subject_keyword"])


def test_the_particles_follow_the_ids_last_digit():
    conversation = [{"speaker": "SD2000003", "utterance": "요즘 재택근무 해?"},
                    {"speaker": "SD2000002", "utterance": f"나 토요일에 {PLACES[0]}에서 사진을 찍었어."}]
    summary = reference_summary(conversation, ["회사"])
    assert summary.startswith("SD2000003과 SD2000002는 회사 이야기를 했다. SD2000002는 토요일에")  # 삼 → 과, 이 → 는


def test_dev_and_test_combinations_never_occur_in_train(task):
    train_pairs = {pair_of(example) for example in task["train"]}
    train_combos = {topic_place_of(example) for example in task["train"]}
    train_speakers = set().union(*train_pairs)
    for split in ("dev", "test"):
        for example in task[split]:
            assert pair_of(example) not in train_pairs, example["id"]
            assert topic_place_of(example) not in train_combos, example["id"]
            assert pair_of(example) <= train_speakers  # every speaker id was seen in train, each pair was not
    dev_pairs = {pair_of(example) for example in task["dev"]}
    assert not dev_pairs & {pair_of(example) for example in task["test"]}


def test_memorising_train_gets_the_wording_only(tmp_path):
    """Another dialogue's reference for every dev dialogue — the right wording with the wrong names — scores
    about half: the demo's SFT line (≥ 80) can only be passed by reading."""
    from demo.pipeline import wording_only_rouge1

    paths = write_task(tmp_path, seed=0)
    assert 40 < wording_only_rouge1(paths[0], paths[1]) < 60


def test_what_the_summary_copies_is_one_token_in_the_dialogue_and_in_the_summary(task):
    """With the tiny model's tokenizer trained on train (as `make demo` builds it), a speaker id's digits, a day
    and a place are single tokens, the same ones in the dialogue and in the summary: copying is learnable."""
    from dataset_builders.prompt import user_message
    from dataset_builders.nikl import Utterance
    from exaone.tiny import build_tokenizer

    texts = [user_message([Utterance(**turn) for turn in example["input"]["conversation"]],
                          example["input"]["subject_keyword"]) + example["output"] for example in task["train"]]
    tokenizer = build_tokenizer(texts)
    for example in task["dev"][:8]:
        prompt = tokenizer.tokenize(user_message([Utterance(**turn) for turn in example["input"]["conversation"]],
                                                 example["input"]["subject_keyword"]))
        summary = tokenizer.tokenize(example["output"])
        teller, day, place, _ = find_detail(example["input"]["conversation"])
        for piece in (teller[2:], f"Ġ{day}에", f"Ġ{place}에서" if " " not in place else None):
            if piece is None:
                continue
            encoded = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(piece.replace("Ġ", " ")))
            assert len(encoded) == 1, piece
            token = tokenizer.convert_ids_to_tokens(encoded)[0]
            assert token in prompt and token in summary, piece


def test_the_command_writes_the_three_files(tmp_path):
    result = tools_cli("build-learnable-task", "--output-dir", tmp_path, "--train", 12, "--dev", 3, "--test", 2)
    assert result.exit_code == 0, result.output
    assert "seed 0" in result.output
    sizes = [len(json.loads((tmp_path / f"일상대화요약_{split}.json").read_text(encoding="utf-8")))
             for split in ("train", "dev", "test")]
    assert sizes == [12, 3, 2]
