"""`tools build-dpo-data`: the command over the real Mecab ROUGE-1 scorer, its output format and errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from common import io
from common.io import read_jsonl
from common.tokenizer import chat_prompt_ids, load_tokenizer
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import PromptBuilder
from dataset_builders.synthetic import write_split
from helpers import TRAIN, load_json, tools_cli
from tools.cli import cli

EXAMPLES = load_nikl(TRAIN)
REFERENCE = {example.id: example.output for example in EXAMPLES}
FIRST, SECOND = EXAMPLES[0].id, EXAMPLES[1].id
# Per dialogue: the reference minus its last sentence, a summary of another dialogue, and an
# English line that shares no morpheme with any Korean reference (ROUGE-1 F = 0).
UNRELATED = "They talked about nothing in particular."


def shortened(text: str) -> str:
    """The reference without its last sentence: much closer to it than any other dialogue's summary."""
    return text.rsplit(". ", 1)[0] + "."


def candidate_rows():
    return [
        {"id": FIRST, "candidates": [shortened(REFERENCE[FIRST]), REFERENCE[SECOND], UNRELATED]},
        {"id": SECOND, "candidates": [UNRELATED, shortened(REFERENCE[SECOND]), ""]},
    ]


def write_jsonl(path, rows):
    io.write_jsonl(path, rows)
    return path


def run(tmp_path, *extra, candidates=None):
    candidates = candidates or write_jsonl(tmp_path / "candidates.jsonl", candidate_rows())
    out = tmp_path / "dpo" / "train.jsonl"
    result = CliRunner().invoke(cli, ["build-dpo-data", "--input", str(TRAIN), "--candidates", str(candidates),
                                      "--output", str(out), *map(str, extra)])
    return result, out


def test_ref_vs_worst_rows_in_axolotl_dpo_format(tmp_path):
    result, out = run(tmp_path)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [row["id"] for row in rows] == [FIRST, SECOND]
    for row, example in zip(rows, EXAMPLES[:2]):
        assert list(row) == ["id", "messages", "chosen", "rejected", "score_chosen", "score_rejected"]
        assert row["messages"] == PromptBuilder().build(example).messages  # same prompt as SFT/inference
        assert [message["role"] for message in row["messages"]] == ["system", "user"]
        assert row["chosen"] == {"role": "assistant", "content": example.output}
        assert row["rejected"] == {"role": "assistant", "content": UNRELATED}
        assert row["score_chosen"] == 100.0 and row["score_rejected"] == 0.0
    assert "prompts: 8" in result.output and "pairs: 2" in result.output
    assert "mean margin: 100.00" in result.output
    assert "empty candidate: 1" in result.output  # the drop is reported with its reason
    assert "no candidates for id: 6" in result.output


def test_best_vs_worst_uses_candidates_only(tmp_path):
    result, out = run(tmp_path, "--strategy", "best-vs-worst")
    assert result.exit_code == 0, result.output
    first = read_jsonl(out)[0]
    assert first["chosen"]["content"] == shortened(REFERENCE[FIRST])
    assert first["rejected"]["content"] == UNRELATED
    assert 0 < first["score_chosen"] < 100 and first["score_rejected"] == 0.0


def test_all_pairs_margin_respects_margin_and_cap(tmp_path):
    result, out = run(tmp_path, "--strategy", "all-pairs-margin", "--min-margin", "1", "--max-pairs-per-prompt", "1")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [row["id"] for row in rows] == [FIRST, SECOND]  # one pair per prompt (cap), widest gap first
    assert all(row["score_chosen"] - row["score_rejected"] >= 1 for row in rows)
    assert rows[0]["rejected"]["content"] == UNRELATED


def test_human_pairs_take_precedence(tmp_path):
    human = write_jsonl(tmp_path / "human.jsonl", [{"id": FIRST, "chosen": "사람이 고른 요약.", "rejected": "사람이 버린 요약."}])
    result, out = run(tmp_path, "--human", human)
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in read_jsonl(out)}
    assert rows[FIRST]["chosen"]["content"] == "사람이 고른 요약."
    assert rows[FIRST]["rejected"]["content"] == "사람이 버린 요약."
    assert rows[SECOND]["rejected"]["content"] == UNRELATED
    assert "(human: 1)" in result.output


def test_unknown_candidate_id_is_a_clear_error(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "no-such-id", "candidates": ["x"]}])
    result, out = run(tmp_path, candidates=bad)
    assert result.exit_code == 1
    assert "'no-such-id' is not in the data file" in result.output
    assert not out.exists()


def test_no_surviving_pair_writes_nothing(tmp_path):
    only_empty = write_jsonl(tmp_path / "empty.jsonl", [{"id": FIRST, "candidates": ["", "  "]}])
    result, out = run(tmp_path, candidates=only_empty)
    assert result.exit_code == 1 and "no preference pair survived" in result.output
    assert not out.exists()


def test_model_metric_without_weights_says_why(tmp_path):
    result, out = run(tmp_path, "--metric", "bertscore", "--bertscore-model", tmp_path / "no-model")
    assert result.exit_code != 0
    assert "bertscore" in result.output.lower() and not out.exists()


def test_test_split_without_references_is_refused(tmp_path):
    test_file = tmp_path / "test.json"
    data = load_json(TRAIN)
    for item in data:
        item["output"] = ""
    test_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    candidates = write_jsonl(tmp_path / "c.jsonl", candidate_rows())
    result = CliRunner().invoke(cli, ["build-dpo-data", "--input", str(test_file), "--candidates", str(candidates),
                                      "--output", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "output" in result.output


def test_help():
    assert "Example:" in CliRunner().invoke(cli, ["build-dpo-data", "--help"]).output


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
