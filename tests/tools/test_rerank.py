"""`tools rerank`: MBR choice with the real Mecab ROUGE-1, file merging, and errors."""

import json

from click.testing import CliRunner

from helpers import DEV, load_json
from tools.cli import cli

IDS = [item["id"] for item in load_json(DEV)]
# For every dialogue the consensus summary is the middle one: it shares most morphemes with both others.
SETS = {
    IDS[0]: ["두 사람은 영어 학원 이야기를 했다.", "두 사람은 영어 학원과 시험 이야기를 했다.", "두 사람은 시험 이야기를 했다."],
    IDS[1]: ["휴대폰 배터리가 빨리 닳는다.", "휴대폰 배터리를 교체하기로 했다.", "날씨가 좋다."],
    IDS[2]: ["김장을 했다.", "김장을 했다.", "수육을 삶아 먹었다."],
    IDS[3]: ["도서관이 새로 생겼다.", "동네에 도서관이 새로 생겨서 가 보았다.", "동네 카페에 갔다."],
}
EXPECTED = {IDS[0]: SETS[IDS[0]][1], IDS[1]: SETS[IDS[1]][0], IDS[2]: "김장을 했다.", IDS[3]: SETS[IDS[3]][1]}


def write_candidates(path, sets):
    path.write_text("".join(json.dumps({"id": key, "candidates": value}, ensure_ascii=False) + "\n"
                            for key, value in sets.items()), encoding="utf-8")
    return path


def run(*args):
    return CliRunner().invoke(cli, ["rerank", *map(str, args)])


def test_picks_consensus_and_writes_submission(tmp_path):
    out = tmp_path / "result.json"
    result = run("--candidates", write_candidates(tmp_path / "c.jsonl", SETS), "--input", DEV, "--output", out)
    assert result.exit_code == 0, result.output
    submission = load_json(out)
    assert [item["id"] for item in submission] == IDS
    assert {item["id"]: item["output"] for item in submission} == EXPECTED
    assert submission[0]["input"] == load_json(DEV)[0]["input"]
    assert out.read_text(encoding="utf-8").startswith('[\n    {\n        "id"')  # indent 4, UTF-8


def test_merges_files_by_id(tmp_path):
    first = {key: value[:1] for key, value in SETS.items()}
    second = {key: value[1:] for key, value in SETS.items()}
    out = tmp_path / "result.json"
    result = run("--candidates", write_candidates(tmp_path / "a.jsonl", first),
                 "--candidates", write_candidates(tmp_path / "b.jsonl", second), "--input", DEV, "--output", out)
    assert result.exit_code == 0, result.output
    assert {item["id"]: item["output"] for item in load_json(out)} == EXPECTED


def test_missing_and_unknown_ids(tmp_path):
    partial = {key: SETS[key] for key in IDS[:2]}
    result = run("--candidates", write_candidates(tmp_path / "c.jsonl", partial), "--input", DEV, "--output", tmp_path / "r.json")
    assert result.exit_code == 1 and "2 id(s)" in result.output and repr(IDS[2]) in result.output
    assert not (tmp_path / "r.json").exists()
    extra = {**SETS, "nope": ["x"]}
    result = run("--candidates", write_candidates(tmp_path / "d.jsonl", extra), "--input", DEV, "--output", tmp_path / "r.json")
    assert result.exit_code == 1 and "'nope' is not in the data file" in result.output


def test_help():
    assert "Example:" in CliRunner().invoke(cli, ["rerank", "--help"]).output
