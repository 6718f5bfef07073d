"""dataset_builders/candidates.py: candidate files that are not (a submission, not UTF-8) are one line naming the
file and line; an empty or looping candidate is never chosen."""

from __future__ import annotations

import json

from common.io import write_json
from helpers import DEV, load_json, one_line_error, tools_cli


# --------------------------------------------------------------------------- rerank never submits nothing


def test_rerank_never_picks_an_empty_or_looping_summary(tmp_path):
    ids = [item["id"] for item in load_json(DEV)]
    loop = "하" * 40
    sets = {ids[0]: [loop, loop, "두 사람은 시험 이야기를 했다."],  # the loop agrees with itself, and loses
            ids[1]: ["", "   ", "휴대폰 배터리를 교체하기로 했다."],
            ids[2]: ["김장을 했다.", "김장을 했다. " * 8],
            ids[3]: ["", loop]}  # nothing usable
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"id": k, "candidates": v}, ensure_ascii=False) + "\n" for k, v in sets.items()),
                    encoding="utf-8")
    out = tmp_path / "result.json"
    message = one_line_error(tools_cli("rerank", "--candidates", path, "--input", DEV, "--output", out))
    assert f"1 dialogue(s) have only empty or degenerate candidates: {ids[3]!r}" in message and "--fallback" in message
    assert not out.exists()
    greedy = tmp_path / "greedy.json"
    write_json(greedy, [{**item, "output": f"greedy {item['id']}"} for item in load_json(DEV)])
    result = tools_cli("rerank", "--candidates", path, "--input", DEV, "--output", out, "--fallback", greedy)
    assert result.exit_code == 0, result.output
    chosen = {item["id"]: item["output"] for item in load_json(out)}
    assert chosen == {ids[0]: "두 사람은 시험 이야기를 했다.", ids[1]: "휴대폰 배터리를 교체하기로 했다.",
                      ids[2]: "김장을 했다.", ids[3]: f"greedy {ids[3]}"}
    assert f"1 taken from {greedy}" in result.output


def test_a_submission_where_candidates_belong_is_named(tmp_path):
    message = one_line_error(tools_cli("rerank", "--candidates", DEV, "--input", DEV, "--output", tmp_path / "r.json"))
    assert f"{DEV}: a JSON list, not JSONL" in message


def test_candidates_that_are_not_utf8_name_the_file_and_line(tmp_path):
    bad = tmp_path / "c.jsonl"
    bad.write_bytes(json.dumps({"id": load_json(DEV)[0]["id"], "candidates": ["a"]}).encode() + b'\n{"id": "\xff"}\n')
    message = one_line_error(tools_cli("rerank", "--candidates", bad, "--input", DEV, "--output", tmp_path / "r.json"))
    assert f"{bad}: line 2: not UTF-8 text" in message
