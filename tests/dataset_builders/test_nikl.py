"""dataset_builders/nikl.py: what is not a NIKL task file (broken JSON, JSONL) is one line naming the file."""

from __future__ import annotations

import json

from helpers import TRAIN, load_json, one_line_error, tools_cli


def test_broken_json_message_reads_well(tmp_path, write_nikl):
    message = one_line_error(tools_cli("build-sft-data", "--input", write_nikl('[{"id": "a'), "--output", tmp_path / "o.jsonl"))
    assert "not valid JSON (Unterminated string starting at: line 1, column 9)" in message


def test_jsonl_where_a_task_file_belongs_is_named(tmp_path):
    rows = tmp_path / "train.jsonl"
    rows.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in load_json(TRAIN)), encoding="utf-8")
    message = one_line_error(tools_cli("build-sft-data", "--input", rows, "--output", tmp_path / "o.jsonl"))
    assert "JSONL (one JSON object per line), not a NIKL task file (one JSON list of examples)" in message
