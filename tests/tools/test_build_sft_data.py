"""`tools build-sft-data`: output format, summary, and every bad-input case."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from common.io import read_jsonl
from common.tokenizer import chat_prompt_ids, load_tokenizer
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import PromptBuilder, SYSTEM_PROMPTS, user_message
from dataset_builders.recipe import length_rules
from dataset_builders.synthetic import write_split
from helpers import REPO, TRAIN, load_json, one_line_error, tools_cli
from tools.cli import cli


def run(*args):
    return CliRunner().invoke(cli, ["build-sft-data", *map(str, args)])


def test_writes_axolotl_chat_rows(tmp_path):
    out = tmp_path / "sft" / "train.jsonl"
    result = run("--input", TRAIN, "--output", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    raw = load_json(TRAIN)
    examples = load_nikl(TRAIN)
    assert [row["id"] for row in rows] == [item["id"] for item in raw]
    for row, example in zip(rows, examples):
        assert set(row) == {"id", "messages"}
        assert row["messages"] == [
            {"role": "system", "content": SYSTEM_PROMPTS["exaone"]},
            {"role": "user", "content": user_message(example.conversation, example.subject_keyword)},
            {"role": "assistant", "content": example.output},
        ]
    assert f"examples read: {len(raw)}" in result.output
    assert f"examples written: {len(raw)}" in result.output
    assert "examples truncated: 0" in result.output
    assert "examples cleaned: 0 (no rules asked for)" in result.output
    assert "prompt chars: min" in result.output
    assert "어~" in out.read_text(encoding="utf-8")  # raw text kept, UTF-8 not escaped


def test_system_prompt_by_name_and_custom(tmp_path):
    out = tmp_path / "a.jsonl"
    assert run("--input", TRAIN, "--output", out, "--system-prompt", "reference").exit_code == 0
    assert json.loads(out.read_text().splitlines()[0])["messages"][0]["content"] == SYSTEM_PROMPTS["reference"]
    assert run("--input", TRAIN, "--output", out, "--system-prompt-text", "대화를 요약하세요.").exit_code == 0
    assert json.loads(out.read_text().splitlines()[0])["messages"][0]["content"] == "대화를 요약하세요."
    assert run("--input", TRAIN, "--output", out, "--system-prompt", "EXAONE").exit_code == 0  # a preset, any case
    assert json.loads(out.read_text().splitlines()[0])["messages"][0]["content"] == SYSTEM_PROMPTS["exaone"]


def test_a_preset_typo_is_an_error_not_a_prompt(tmp_path):
    result = run("--input", TRAIN, "--output", tmp_path / "a.jsonl", "--system-prompt", "exaon")
    assert result.exit_code == 2 and "'exaon' is not one of 'exaone', 'reference'" in result.output
    result = run("--input", TRAIN, "--output", tmp_path / "a.jsonl", "--system-prompt", "reference",
                 "--system-prompt-text", "x")
    assert result.exit_code == 2 and "not both" in result.output


def test_cleaning_summary(tmp_path):
    out = tmp_path / "a.jsonl"
    result = run("--input", TRAIN, "--output", out, "--clean", "fillers", "--clean", "empty")
    assert result.exit_code == 0, result.output
    assert "rules: fillers, empty" in result.output
    assert "fillers: changed" in result.output and "empty: dropped 3 utterances" in result.output
    assert "어~" not in out.read_text(encoding="utf-8")


def test_truncation_summary(tmp_path, tiny_model):
    out = tmp_path / "a.jsonl"
    result = run("--input", TRAIN, "--output", out, "--tokenizer", tiny_model, "--max-prompt-tokens", 120)
    assert result.exit_code == 0, result.output
    truncated = int(result.output.split("examples truncated: ")[1].split()[0])
    assert truncated == len(load_json(TRAIN))
    assert "prompt tokens: min" in result.output
    for line in out.read_text(encoding="utf-8").splitlines():
        assert "[Question]\n위 " in json.loads(line)["messages"][1]["content"]


def test_max_prompt_tokens_needs_tokenizer(tmp_path):
    result = run("--input", TRAIN, "--output", tmp_path / "a.jsonl", "--max-prompt-tokens", 100)
    assert result.exit_code != 0 and "needs --tokenizer" in result.output


GOOD = load_json(TRAIN)[:2]


def mutate(change):
    data = copy.deepcopy(GOOD)
    change(data)
    return data


BAD_CASES = {
    "not-json": ("{oops", "not valid JSON"),
    "not-list": ('{"id": "x"}', "top level must be a JSON list"),
    "empty-list": ("[]", "contains no examples"),
    "example-not-object": (mutate(lambda d: d.__setitem__(1, "text")), "example at index 1: must be an object"),
    "missing-id": (mutate(lambda d: d[1].pop("id")), "example at index 1: missing field 'id'"),
    "id-not-string": (mutate(lambda d: d[1].__setitem__("id", 7)), "field 'id' must be a string"),
    "missing-input": (mutate(lambda d: d[1].pop("input")), "missing field 'input'"),
    "missing-conversation": (mutate(lambda d: d[1]["input"].pop("conversation")), "missing field 'input.conversation'"),
    "empty-conversation": (mutate(lambda d: d[1]["input"].__setitem__("conversation", [])), "'input.conversation' is empty"),
    "missing-utterance": (
        mutate(lambda d: d[1]["input"]["conversation"][2].pop("utterance")),
        "missing field 'input.conversation[2].utterance'",
    ),
    "utterance-not-string": (
        mutate(lambda d: d[1]["input"]["conversation"][0].__setitem__("utterance", None)),
        "field 'input.conversation[0].utterance' must be a string, got NoneType",
    ),
    "speaker-empty": (
        mutate(lambda d: d[1]["input"]["conversation"][0].__setitem__("speaker", "")),
        "field 'input.conversation[0].speaker' is empty",
    ),
    "keywords-not-list": (
        mutate(lambda d: d[1]["input"].__setitem__("subject_keyword", "여행")),
        "field 'input.subject_keyword' must be a list",
    ),
    "keyword-not-string": (
        mutate(lambda d: d[1]["input"].__setitem__("subject_keyword", ["여행", 3])),
        "field 'input.subject_keyword[1]' must be a string",
    ),
    "missing-output": (mutate(lambda d: d[1].pop("output")), "missing field 'output'"),
    "empty-output": (mutate(lambda d: d[1].__setitem__("output", "")), "field 'output' is empty"),
    "duplicate-id": (mutate(lambda d: d[1].__setitem__("id", d[0]["id"])), "duplicate id (first seen at index 0)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_error_no_output(case, write_nikl, tmp_path):
    data, message = BAD_CASES[case]
    path = write_nikl(data, "일상대화요약_train.json")
    out = tmp_path / "out" / "train.jsonl"
    result = run("--input", path, "--output", out)
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    assert str(path) in error_lines[0] and message in error_lines[0]
    if isinstance(data, list) and case not in {"example-not-object", "missing-id", "id-not-string"}:
        assert repr(GOOD[1]["id"]) in error_lines[0] or "duplicate" in case  # names the example id
    assert not out.exists()
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_failure_keeps_previous_output(write_nikl, tmp_path):
    out = tmp_path / "train.jsonl"
    out.write_text("previous\n")
    path = write_nikl(BAD_CASES["empty-output"][0])
    assert run("--input", path, "--output", out).exit_code == 1
    assert out.read_text() == "previous\n"


def test_help_lists_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "build-sft-data" in result.output and "build-tiny-model" in result.output
    assert "Example:" in CliRunner().invoke(cli, ["build-sft-data", "--help"]).output


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
