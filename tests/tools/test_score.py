"""`tools score`: the table, the report format, id matching errors and skipped metrics (no models here;
see tests/eval/test_metrics.py for BERTScore/BLEURT on tiny local models)."""

import json

import pytest
from click.testing import CliRunner

from helpers import DEV, TEST, load_json
from common.errors import UserError
from eval.metrics import MetricUnavailable, align_by_id, pair_scorer, score_pairs
from tools.cli import cli

ITEMS = load_json(DEV)
IDS = [item["id"] for item in ITEMS]
REPORT_KEYS = {"rouge1", "rouge2", "rougeL", "bertscore", "bleurt", "official"}
# (prediction, reference, ROUGE-1 F by hand from the Mecab morphemes — see tests/eval/test_rouge.py)
PAIRS = {
    IDS[0]: ("두 사람은 시험 이야기를 했다.", "두 사람은 영어 학원 이야기를 했다.", 2 * 7 / (8 + 9)),
    IDS[1]: ("SD2100503은 COVID-19 때문에 Zoom으로 수업을 들었다!!", "sd2100503은 covid 19 때문에 zoom 수업을 들었다.",
             2 * 13 / (14 + 13)),
    IDS[2]: ("", "두 사람은 시험 이야기를 했다.", 0.0),
    IDS[3]: ("김장을 했다.", "김장을 했다.", 1.0),
}


def nikl(column: int, ids=IDS) -> list[dict]:
    """The dev items with ``output`` replaced by the predictions (0) or references (1) above."""
    by_id = {item["id"]: item for item in ITEMS}
    return [{**by_id[key], "output": PAIRS[key][column]} for key in ids]


def run(*args):
    return CliRunner().invoke(cli, ["score", *map(str, args)])


@pytest.fixture
def files(write_nikl):
    # Predictions in another order than references: matching is by id.
    return write_nikl(nikl(0, IDS[::-1]), "result.json"), write_nikl(nikl(1), "refs.json")


def test_rouge_table_and_report(files, tmp_path):
    predictions, references = files
    report_path = tmp_path / "out" / "report.json"
    result = run("--predictions", predictions, "--input", references, "--metrics", "rouge1",
                 "--report", report_path)
    assert result.exit_code == 0, result.output
    expected = 100 * sum(pair[2] for pair in PAIRS.values()) / 4
    assert f"ROUGE-1      {expected:.2f}" in result.output
    assert "BERTScore        —" in result.output and "n                4" in result.output
    assert "note: 1 empty prediction(s)" in result.output

    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert set(report) == REPORT_KEYS | {"n", "skipped", "models", "per_example"}
    assert report["n"] == 4
    assert report["rouge1"] == pytest.approx(expected)
    assert report["bertscore"] is None and report["bleurt"] is None and report["official"] is None
    assert report["skipped"] == {"bertscore": "not requested", "bleurt": "not requested",
                                 "official": "needs BERTScore, BLEURT"}
    rows = report["per_example"]
    assert [row["id"] for row in rows] == IDS  # the references' order
    assert all(set(row) == REPORT_KEYS | {"id"} for row in rows)
    assert [row["rouge1"] for row in rows] == pytest.approx([100 * pair[2] for pair in PAIRS.values()])
    assert rows[3]["rouge2"] == rows[3]["rougeL"] == 100.0 and rows[2]["rougeL"] == 0.0
    assert report_path.read_text(encoding="utf-8").startswith('{\n    "rouge1"')  # indent 4, UTF-8


def test_default_metrics_skip_missing_models_with_reason(files, tmp_path):
    predictions, references = files
    report_path = tmp_path / "report.json"
    result = run("--predictions", predictions, "--input", references, "--report", report_path)
    assert result.exit_code == 0, result.output
    offline = "not a local directory and not in the Hugging Face cache (HF_HUB_OFFLINE=1)"
    assert f"skipped bertscore: cannot load 'bert-base-multilingual-cased': {offline}" in result.output
    assert f"skipped bleurt: cannot load 'lucadiliello/BLEURT-20': {offline}" in result.output
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["rouge1"] is not None and report["official"] is None
    assert "--bleurt-model DIR" in report["skipped"]["bleurt"]
    assert report["skipped"]["official"] == "needs BERTScore, BLEURT"


def test_local_model_paths_that_do_not_exist(files, tmp_path):
    """A model the user named explicitly must load: a wrong path is an error, not a silently skipped metric."""
    predictions, references = files
    missing = tmp_path / "no-such-model"
    result = run("--predictions", predictions, "--input", references,
                 "--bertscore-model", missing, "--bertscore-layers", "2", "--bleurt-model", missing)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: bertscore: --bertscore-model {missing}: no such directory (on a connected machine: "
        "huggingface-cli download bert-base-multilingual-cased --local-dir DIR)")
    result = run("--predictions", predictions, "--input", references, "--metrics", "rouge,bleurt",
                 "--bleurt-model", missing)
    assert result.exit_code == 1 and f"Error: bleurt: --bleurt-model {missing}: no such directory" in result.output
    with pytest.raises(MetricUnavailable, match="no such directory"):  # the library call says why too
        score_pairs(["가"], ["가"], ("bleurt",), bleurt_model=str(missing), required=("bleurt",))
    assert "no such directory" in score_pairs(["가"], ["가"], ("bleurt",), bleurt_model=str(missing)).skipped["bleurt"]


def test_all_empty_predictions_are_an_error(write_nikl):
    empty = write_nikl([{**item, "output": ""} for item in ITEMS], "empty.json")
    result = run("--predictions", empty, "--input", DEV, "--metrics", "rouge")
    assert result.exit_code == 1
    assert f"all {len(ITEMS)} predictions are empty" in result.output.strip().splitlines()[-1]


def test_unknown_bertscore_model_needs_a_layer():
    report = score_pairs(["가"], ["가"], ("bertscore",), bertscore_model="someone/korean-bert")
    assert "pass --bertscore-layers N" in report.skipped["bertscore"]


@pytest.mark.parametrize("prediction_ids, message", [
    (IDS[:3], f"1 id(s) of {{refs}} missing from {{preds}}: {IDS[3]!r}"),
    (IDS + ["nikl-dev-999999"], "1 id(s) of {preds} not in {refs}: 'nikl-dev-999999'"),
])
def test_missing_and_extra_ids(write_nikl, tmp_path, prediction_ids, message):
    rows = [{**ITEMS[0], "id": key, "output": "요약"} for key in prediction_ids]
    predictions, references = write_nikl(rows, "result.json"), write_nikl(nikl(1), "refs.json")
    result = run("--predictions", predictions, "--input", references, "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    assert message.format(preds=predictions, refs=references) in result.output
    assert not (tmp_path / "r.json").exists()


def test_duplicate_ids(write_nikl):
    rows = nikl(0)
    rows[2]["id"] = rows[1]["id"]
    predictions = write_nikl(rows, "result.json")
    result = run("--predictions", predictions, "--input", DEV, "--metrics", "rouge")
    assert result.exit_code == 1
    assert f"example {IDS[1]!r} (index 2): duplicate id" in result.output
    with pytest.raises(UserError, match=r"duplicate id\(s\) in predictions: 'a'.*1 id\(s\) of predictions not in"):
        align_by_id([("a", "x"), ("a", "y"), ("b", "z")], [("a", "r")])


def test_references_need_summaries():
    result = run("--predictions", DEV, "--input", TEST, "--metrics", "rouge")
    assert result.exit_code == 1 and "field 'output' is empty" in result.output
    assert "--input needs reference summaries to score against" in result.output
    assert "training split" not in result.output  # its own words, not the training-data message


def test_bad_metrics_option():
    result = run("--predictions", DEV, "--input", DEV, "--metrics", "rouge1,bleu")
    assert result.exit_code == 2 and "bleu: choose from rouge1, rouge2, rougeL, bertscore, bleurt, official" in result.output


def test_one_spelling_of_each_metric_everywhere_and_the_old_one_too(files, tmp_path):
    """`tools score --metrics rouge` (the old spelling) is rouge1; any case works; the library takes the same names."""
    predictions, references = files
    reports = []
    for spelling in ("rouge1", "rouge", "ROUGE1", "rougel"):
        report = tmp_path / f"{spelling}.json"
        assert run("--predictions", predictions, "--input", references, "--metrics", spelling,
                   "--report", report).exit_code == 0
        reports.append(json.loads(report.read_text(encoding="utf-8")))
    assert all(report == reports[0] for report in reports)
    texts = [item["output"] or "빈 요약" for item in load_json(DEV)]
    assert pair_scorer("rouge")(texts, texts[::-1]) == pair_scorer("rouge1")(texts, texts[::-1])
    assert pair_scorer("rougeL")(["사과 배"], ["배 사과"]) == [50.0] and pair_scorer("rouge2")(["사과 배"], ["배 사과"]) == [0.0]
    for command in ("select-checkpoint", "build-dpo-data"):
        option = next(param for param in cli.commands[command].params if param.name == "metric")
        assert [option.type.convert(name, option, None) for name in ("rouge", "OFFICIAL", "rougeL")] == [
            "rouge1", "official", "rougeL"]


def test_api_reports_every_skip():
    report = score_pairs(["김장을 했다."], ["김장을 했다."], ("rouge",), ids=["x"])
    assert report.score("rouge1") == 100.0 and report.score("official") is None
    assert set(report.skipped) == {"bertscore", "bleurt", "official"}
    assert report.to_json()["per_example"] == [{"id": "x", "rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0,
                                                "bertscore": None, "bleurt": None, "official": None}]
    with pytest.raises(UserError, match="unknown metric 'bleu'; choose from rouge1, rouge2, rougeL"):
        score_pairs(["a"], ["a"], ("bleu",))
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        score_pairs(["a", "b"], ["a"])


def test_pair_scorer_fails_cleanly_without_weights(tmp_path):
    with pytest.raises(MetricUnavailable, match="no such directory"):
        pair_scorer("bleurt", bleurt_model=str(tmp_path / "none"))
    with pytest.raises(MetricUnavailable, match="HF_HUB_OFFLINE=1"):
        pair_scorer("official")
    with pytest.raises(UserError, match="unknown metric 'rouge-1'"):
        pair_scorer("rouge-1")


def test_help():
    output = CliRunner().invoke(cli, ["score", "--help"]).output
    assert "Example:" in output and "--bleurt-model" in output
