"""common/text.py: ids in two Unicode forms are named as such, and a lone surrogate (text no UTF-8 file can hold) is
refused where it is read, under every command that reads it."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from helpers import (
    DEV,
    INFER,
    TRAIN,
    candidates_file,
    killed,
    lines_in,
    listing,
    load_json,
    many_dialogues,
    one_line_error,
    snapshot,
    tools_cli,
)


# --------------------------------------------------------------------------- ids in two Unicode forms


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_score_names_ids_that_differ_only_in_their_unicode_form(tmp_path, write_nikl):
    references = load_json(DEV)
    references[0]["id"] = "대화-0001"
    predictions = [dict(item) for item in references]
    predictions[0]["id"] = nfd("대화-0001")
    message = one_line_error(tools_cli("score", "--predictions", write_nikl(predictions, "p.json"), "--input",
                                       write_nikl(references, "r.json"), "--metrics", "rouge1"))
    twins = f"{nfd('대화-0001')!r} (NFD) and '대화-0001' (NFC) are the same id in two Unicode normalisation forms"
    assert twins in message
    assert "missing" not in message  # not also listed as one missing and one extra id


def test_one_file_with_an_id_in_two_forms_is_one_line(write_nikl):
    items = load_json(DEV)[:2]
    items[0]["id"], items[1]["id"] = "대화-0001", nfd("대화-0001")
    message = one_line_error(tools_cli("score", "--predictions", write_nikl(items), "--input", DEV))
    assert "(NFD) and '대화-0001' (NFC) are the same id in two Unicode normalisation forms" in message
    assert "first seen at index 0" in message


def test_candidates_with_an_id_in_the_other_form_are_named_as_such(tmp_path, write_nikl):
    items = load_json(TRAIN)[:2]
    items[0]["id"] = "대화-0001"
    candidates = tmp_path / "c.jsonl"
    row = {"id": nfd("대화-0001"), "candidates": ["가", "나"]}
    candidates.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    message = one_line_error(tools_cli("rerank", "--candidates", candidates, "--input", write_nikl(items),
                                       "--output", tmp_path / "out.json"))
    assert "is not in the data file as written" in message and "(NFD) and '대화-0001' (NFC)" in message


# --------------------------------------------------------------------------- 5. lone surrogates


LONE = "\ud800"  # json.dumps writes it as the escape \ud800: legal JSON, no UTF-8 encoding


def spoiled(items: list[dict], index: int, path: tuple) -> list[dict]:
    """A deep copy of ``items`` with a lone surrogate appended to the string at ``items[index][path…]``."""
    items = json.loads(json.dumps(items))
    owner = items[index]
    for key in path[:-1]:
        owner = owner[key]
    owner[path[-1]] += LONE
    return items


class TestLoneSurrogates:
    """Issue 22, item 5: a lone surrogate in an utterance, output or id crashed build-sft-data, infer,
    build-dpo-data and rerank with UnicodeEncodeError/TypeError tracebacks."""

    @pytest.mark.parametrize("field, path", [
        ("input.conversation[2].utterance", ("input", "conversation", 2, "utterance")),
        ("output", ("output",)),
        ("id", ("id",)),
        ("input.subject_keyword[0]", ("input", "subject_keyword", 0)),
    ])
    @pytest.mark.parametrize("command", ["build-sft-data", "infer", "score", "rerank"])
    def test_nikl_files_are_rejected_at_load(self, tiny_model, tmp_path, field, path, command):
        items = load_json(DEV)
        data = tmp_path / "dev.json"
        data.write_text(json.dumps(spoiled(items, 1, path)), encoding="utf-8")
        before = snapshot(data)
        out = tmp_path / "out.json"
        args = {"build-sft-data": ["build-sft-data", "--input", data, "--output", tmp_path / "out.jsonl"],
                "infer": [*INFER, "--ckpt", tiny_model, "--input", data, "--output", out],
                "score": ["score", "--predictions", data, "--input", DEV, "--metrics", "rouge1"],
                "rerank": ["rerank", "--candidates", candidates_file(tmp_path, items), "--input", data, "--output", out],
                }[command]
        message = one_line_error(tools_cli(*args))
        assert message.startswith(f"Error: {data}: example ") and "(index 1)" in message
        assert f"field '{field}' holds a lone surrogate" in message
        assert snapshot(data) == before and "out.json" not in listing(tmp_path)

    @pytest.mark.parametrize("command", ["rerank", "build-dpo-data"])
    def test_candidates_are_rejected_at_load(self, tmp_path, command):
        items = load_json(DEV)
        candidates = candidates_file(tmp_path, items)
        rows = [json.loads(line) for line in candidates.read_text(encoding="utf-8").splitlines()]
        candidates.write_text("".join(json.dumps(row) + "\n" for row in spoiled(rows, 2, ("candidates", 1))),
                              encoding="utf-8")
        message = one_line_error(tools_cli(command, "--candidates", candidates, "--input", DEV, "--output",
                                           tmp_path / ("out.json" if command == "rerank" else "out.jsonl")))
        assert message.startswith(f"Error: {candidates}: line 3 (id {items[2]['id']!r}): field 'candidates[1]' holds "
                                  "a lone surrogate")

    def test_human_pairs_are_rejected_at_load(self, tmp_path):
        items = load_json(DEV)
        human = tmp_path / "human.jsonl"
        pair = {"id": items[0]["id"], "chosen": "좋은 요약", "rejected": "나쁜 요약"}
        human.write_text(json.dumps(spoiled([pair], 0, ("rejected",))[0]) + "\n", encoding="utf-8")
        message = one_line_error(tools_cli("build-dpo-data", "--input", DEV, "--candidates", candidates_file(tmp_path, items),
                                           "--human", human, "--output", tmp_path / "out.jsonl"))
        assert f"{human}: line 1 (id {items[0]['id']!r}): field 'rejected' holds a lone surrogate" in message

    def test_a_sidecar_row_with_one_is_regenerated(self, tiny_model, tmp_path, write_nikl):
        data = many_dialogues(write_nikl)
        out = tmp_path / "result.json"
        sidecar = Path(f"{out}.partial.jsonl")
        args = [*INFER, "--ckpt", tiny_model, "--input", data, "--output", out, "--batch-size", 1]
        killed(args, lambda: lines_in(sidecar) >= 3)
        header, first, *rest = sidecar.read_text(encoding="utf-8").splitlines()
        row = json.loads(first)
        sidecar.write_text("\n".join([header, json.dumps({**row, "output": row["output"] + LONE}), *rest]) + "\n",
                           encoding="utf-8")
        result = tools_cli(*args)
        assert result.exit_code == 0, result.output
        assert "line 2: field 'output' holds a lone surrogate" in result.output
        assert {item["id"]: item["output"] for item in load_json(out)}[row["id"]] == row["output"]
