"""Real-length dialogues: no prompt overflows the model's context, no training row is longer than Axolotl's
sequence_len, nothing is lost without a word, and the synthetic set has the real splits' shape."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from dataset_builders.synthetic import SIZES, make_split, write_split
from common.io import read_jsonl
from common.tokenizer import chat_prompt_ids, load_tokenizer
from helpers import REPO, TRAIN, load_json, one_line_error, tools_cli
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import PromptBuilder, question_text
from generation.decoding import postprocess
from generation.jobs import prepare_jobs
from generation.runner import prompt_budget
from dataset_builders.recipe import length_rules

SMALL_CONTEXT = 512


@pytest.fixture(scope="module")
def short_context_model(tiny_model, tmp_path_factory):
    """The tiny model with a 512-position context: a real-length dialogue is far longer than that."""
    path = tmp_path_factory.mktemp("short-context") / "model"
    shutil.copytree(tiny_model, path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": SMALL_CONTEXT}))
    return path


@pytest.fixture(scope="module")
def long_test_file(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("synthetic"), "test", count=3)


def test_synthetic_set_has_the_real_shape():
    for split, size in SIZES.items():
        data = make_split(split)
        assert len(data) == size and len({item["id"] for item in data}) == size
        chars = [sum(len(turn["utterance"]) for turn in item["input"]["conversation"]) for item in data]
        keywords = [len(item["input"]["subject_keyword"]) for item in data]
        assert min(keywords) >= 1 and max(keywords) <= 6
        assert {len({turn["speaker"] for turn in item["input"]["conversation"]}) for item in data} <= {1, 2}
        if split == "test":
            assert all(item["output"] == "" for item in data)
            assert 1900 < statistics.median(chars) < 2300 and max(chars) > 5000  # real: median 2109, max 6296
        else:
            assert all(185 <= len(item["output"]) <= 731 for item in data)
            assert 2200 < statistics.median(chars) < 2700  # real dev: 2449
    text = json.dumps(make_split("train"), ensure_ascii=False)
    for quirk in ("name1", "xx", "어~", "&company-name&", "&address&"):
        assert quirk in text
    assert '"utterance": ""' in text  # empty utterances, as in the real train split
    assert make_split("dev") == make_split("dev") != make_split("dev", seed=1)  # seeded


def test_build_synthetic_data_writes_the_splits_asked_for(tmp_path):
    result = tools_cli("build-synthetic-data", "--output-dir", tmp_path / "s", "--split", "test", "--seed", 3)
    assert result.exit_code == 0, result.output
    assert [path.name for path in (tmp_path / "s").iterdir()] == ["일상대화요약_test.json"]
    assert load_json(tmp_path / "s" / "일상대화요약_test.json") == make_split("test", seed=3)
    assert result.output.startswith(f"wrote {tmp_path / 's' / '일상대화요약_test.json'}: 408 dialogues; chars per "
                                    "dialogue p0/10/50/90/99/100 ")
    (tmp_path / "file").write_text("")
    result = tools_cli("build-synthetic-data", "--output-dir", tmp_path / "file")
    assert result.exit_code == 2 and "is a file" in result.output


def test_infer_never_overflows_the_context(short_context_model, long_test_file):
    """Default options: the prompt budget is the context minus --max-new-tokens; long conversations are cut
    in the middle, the [Question] line survives, and the summary line says how many were cut."""
    result = tools_cli("infer", "--no-progress", "--threads", 1, "--ckpt", short_context_model, "--input", long_test_file,
                 "--output", long_test_file.with_name("result.json"), "--max-new-tokens", 16)
    assert result.exit_code == 0, result.output
    budget = SMALL_CONTEXT - 16
    assert f"prompts truncated: 3 (budget {budget} tokens;" in result.output
    assert "utterances dropped from the middle" in result.output
    tokenizer = load_tokenizer(str(short_context_model))
    examples = load_nikl(long_test_file)
    builder = PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=prompt_budget(SMALL_CONTEXT, 16, None))
    for example, job in zip(examples, prepare_jobs(examples, builder, tokenizer)):
        assert job.truncated and len(job.prompt_ids) <= budget
        assert len(PromptBuilder(tokenizer=tokenizer).build(example).token_ids) > SMALL_CONTEXT + 300  # far longer
        assert tokenizer.decode(job.prompt_ids).endswith(question_text(example.subject_keyword) + "\n[|assistant|]")
    written = load_json(long_test_file.with_name("result.json"))
    assert all(item["output"] == postprocess(item["output"]) for item in written)


def test_asking_for_more_than_fits_is_an_error(short_context_model, long_test_file, tmp_path):
    result = tools_cli("infer", "--ckpt", short_context_model, "--input", long_test_file, "--output", tmp_path / "r.json",
                 "--max-prompt-tokens", 500, "--max-new-tokens", 100)
    assert result.exit_code == 1
    assert "--max-prompt-tokens 500 + --max-new-tokens 100 = 600 tokens do not fit the model's context of 512" in result.output
    result = tools_cli("infer", "--ckpt", short_context_model, "--input", long_test_file, "--output", tmp_path / "r.json",
                 "--max-new-tokens", 600)
    assert result.exit_code == 1 and "leaves no room for a prompt" in result.output
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("max_seq_len", [700, 2048])
def test_sft_rows_fit_the_recipe_sequence_len(tiny_model, tmp_path, max_seq_len):
    """Every written row, tokenized with the chat template Axolotl uses (the recipe's `exaone`), fits."""
    data = write_split(tmp_path, "train", count=12)
    out = tmp_path / "train.jsonl"
    result = tools_cli("build-sft-data", "--input", data, "--output", out, "--recipe", REPO / "recipes" / "exaone_lora.yml",
                 "--tokenizer", tiny_model, "--max-seq-len", max_seq_len)
    assert result.exit_code == 0, result.output
    tokenizer = load_tokenizer(str(tiny_model))
    template = length_rules(REPO / "recipes" / "exaone_lora.yml").chat_template
    rows = read_jsonl(out)
    lengths = [len(chat_prompt_ids(tokenizer, row["messages"], chat_template=template, add_generation_prompt=False))
               for row in rows]
    assert max(lengths) <= max_seq_len
    assert len(rows) == 12 and "examples kept out: 0" in result.output
    truncated = int(result.output.split("examples truncated: ")[1].split()[0])
    assert truncated == sum(row["messages"][1]["content"] != full for row, full in zip(
        rows, (PromptBuilder().build(example).messages[1]["content"] for example in load_nikl(data))))
    assert truncated > 0 if max_seq_len == 700 else True
    for row in rows:  # the question survives every cut
        assert row["messages"][1]["content"].endswith("주제에 대한 대화를 요약해주세요.")


def test_a_row_whose_summary_cannot_fit_is_kept_out_and_named(tiny_model, tmp_path, write_nikl):
    items = load_json(TRAIN)[:3]
    items[1] = {**items[1], "output": "아주 긴 요약입니다. " * 80}
    out = tmp_path / "train.jsonl"
    result = tools_cli("build-sft-data", "--input", write_nikl(items), "--output", out, "--tokenizer", tiny_model,
                 "--max-seq-len", 300)
    assert result.exit_code == 0, result.output
    assert (f"examples kept out: 1 (not even the first word of the dialogue fits beside the summary at rows ≤ 300 "
            f"tokens: {items[1]['id']}; all 1 listed in {out}.kept-out.txt)") in result.output
    assert [row["id"] for row in read_jsonl(out)] == [items[0]["id"], items[2]["id"]]
    assert Path(f"{out}.kept-out.txt").read_text(encoding="utf-8") == f"{items[1]['id']}\n"


def test_max_seq_len_needs_a_tokenizer(tmp_path):
    result = tools_cli("build-sft-data", "--input", TRAIN,
                 "--output", tmp_path / "a.jsonl", "--max-seq-len", 100)
    assert "--max-seq-len needs --tokenizer (or --recipe)" in one_line_error(result)


def test_dpo_pairs_fit_the_sequence_len(tiny_model, tmp_path):
    data = write_split(tmp_path, "train", count=6)
    items = load_json(data)
    candidates = tmp_path / "c.jsonl"
    candidates.write_text("".join(json.dumps({"id": item["id"], "candidates": [
        item["output"][: len(item["output"]) // 3], "두 사람은 이야기를 나누었다. " * 3]}, ensure_ascii=False) + "\n"
        for item in items), encoding="utf-8")
    out = tmp_path / "dpo.jsonl"
    result = tools_cli("build-dpo-data", "--input", data, "--candidates", candidates, "--output", out,
                 "--tokenizer", tiny_model, "--max-seq-len", 900)
    assert result.exit_code == 0, result.output
    tokenizer = load_tokenizer(str(tiny_model))
    for row in read_jsonl(out):
        prompt = chat_prompt_ids(tokenizer, row["messages"])
        for side in ("chosen", "rejected"):
            full = chat_prompt_ids(tokenizer, [*row["messages"], row[side]], add_generation_prompt=False)
            assert len(full) <= 900 and full[:len(prompt)] == prompt


@pytest.mark.parametrize("raw, clean", [
    ("요약\ufffd입니다.", "요약입니다."),
    ("두 사람은\x05 등산을\x00 이야기했다\x7f.", "두 사람은 등산을 이야기했다."),
    ("C1\x85 문자와\x9f 탭\t줄바꿈\n", "C1 문자와 탭 줄바꿈"),
    ("Hangul 한글, Latin ABC, 숫자 123, 구두점 !?.,()~", "Hangul 한글, Latin ABC, 숫자 123, 구두점 !?.,()~"),
])
def test_postprocess_removes_replacement_and_control_characters(raw, clean):
    assert postprocess(raw) == clean
