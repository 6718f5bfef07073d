"""`tools compare`: the report folder (a self-contained, escaped HTML page, pictures), model metrics and the
official mean, the verdicts on files, and its one-line errors."""

from __future__ import annotations

import base64
import struct
import warnings
from html.parser import HTMLParser

import pytest

from helpers import DEV, TEST, load_json, one_line_error, tools_cli


# ---- the report folder -------------------------------------------------------------------------------------


class PageChecker(HTMLParser):
    """Collects every tag, attribute and text of a page, and checks that elements nest properly."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.attributes, self.text, self.problems = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [(tag, name, value) for name, value in attrs]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_report_folder(systems, tmp_path):
    report = tmp_path / "report"
    result = tools_cli("compare", "--input", DEV, *systems, "--report", report, "--resamples", 20_000, "--seed", 3)
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in report.iterdir())
    assert names == ["compare.json", "compare.md", "differences.png", "distributions.png", "lengths.png",
                     "report.html", "score_vs_length.png"]
    for name in names:
        if name.endswith(".png"):
            assert png_size((report / name).read_bytes()) == (800, 450)
    data = load_json(report / "compare.json")
    assert [system["name"] for system in data["systems"]] == ["sft", "dpo"]
    assert data["n"] == 4 and data["resamples"] == 20_000 and data["seed"] == 3
    assert data["metrics"] == ["rouge1", "rouge2", "rougeL"] and data["test"]["adjustment"] == "holm"
    assert [(pair["first"], pair["second"], pair["metric"]) for pair in data["pairs"]] == [
        ("sft", "dpo", "rouge1"), ("sft", "dpo", "rouge2"), ("sft", "dpo", "rougeL")]
    rouge1 = data["pairs"][0]
    per_example = [row["systems"]["dpo"]["rouge1"] - row["systems"]["sft"]["rouge1"] for row in data["per_example"]]
    assert rouge1["difference"] == pytest.approx(sum(per_example) / 4)
    assert rouge1["wins"] + rouge1["ties"] + rouge1["losses"] == 4 and rouge1["differing"] == 4
    assert rouge1["p_value"] == rouge1["p_adjusted"] == 0.125 and rouge1["test"] == "exact"  # all 4 better: 2/2^4
    assert rouge1["verdict"] == "not distinguishable (only 4 examples differ: too few for a verdict)"
    table = (report / "compare.md").read_text(encoding="utf-8")
    assert f"{rouge1['difference']:+.2f} [{rouge1['low']:+.2f}, {rouge1['high']:+.2f}]" in table
    assert "| dpo − sft | ROUGE-1 |" in table and "![differences.png](differences.png)" in table
    assert "| p | wins / ties / losses | verdict |" in table  # one pair: the raw p is the one the verdict uses
    assert "so 5 or fewer can never reach p ≤ 0.05" in table
    assert table.split("## Pairs")[1].split("## Pictures")[0].strip() in result.output


def test_the_html_page_is_self_contained_valid_and_escaped(systems, tmp_path):
    report = tmp_path / "report"
    assert tools_cli("compare", "--input", DEV, *systems, "--report", report,
                     "--name", "SFT <b>", "--name", "DPO").exit_code == 0
    page = (report / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    checker = PageChecker()
    checker.feed(page)
    checker.close()
    assert checker.problems == [] and checker.stack == []
    assert "script" not in checker.tags and "link" not in checker.tags  # nothing runs, nothing is fetched
    for tag, name, value in checker.attributes:
        assert not (name in ("src", "href") and not value.startswith(("data:", "#"))), (tag, name, value[:80])
    images = [value for tag, name, value in checker.attributes if tag == "img" and name == "src"]
    assert len(images) == 4
    for source in images:
        assert png_size(base64.b64decode(source.removeprefix("data:image/png;base64,"))) == (800, 450)
    text = "".join(checker.text)
    assert "<script>alert('x')</script> &" in text and "SFT <b>" in text  # shown as text, escaped in the source
    assert "&lt;script&gt;" in page and "SFT &lt;b&gt;" in page
    assert "DPO − SFT <b>" in text and "화자SD2007701:" in text  # a pair row, a dialogue excerpt
    assert "not distinguishable (only 4 examples differ: too few for a verdict)" in text and "2/2^k" in text


def test_identical_files_are_not_distinguishable(systems, tmp_path):
    first, _ = systems
    result = tools_cli("compare", "--references", DEV, first, first, "--report", tmp_path / "r")
    assert result.exit_code == 0, result.output
    data = load_json(tmp_path / "r" / "compare.json")
    assert [system["name"] for system in data["systems"]] == ["sft", "sft #2"]
    for pair in data["pairs"]:
        assert (pair["difference"], pair["low"], pair["high"], pair["p_value"], pair["p_adjusted"]) == (0, 0, 0, 1, 1)
        assert pair["verdict"] == "not distinguishable" and pair["ties"] == 4
    assert "Every system scores the same" in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")


def test_model_metrics_and_the_official_mean_when_their_weights_are_given(systems, tmp_path, tiny_bert, bleurt_spm):
    report = tmp_path / "report"
    result = tools_cli("compare", "--input", DEV, *systems, "--report", report,
                       "--bertscore-model", tiny_bert, "--bertscore-layers", 2, "--bleurt-model", bleurt_spm)
    assert result.exit_code == 0, result.output
    data = load_json(report / "compare.json")
    assert data["metrics"] == ["rouge1", "rouge2", "rougeL", "bertscore", "bleurt", "official"]
    assert data["primary_metric"] == "official" and len(data["pairs"]) == 6
    scored = tmp_path / "score.json"
    assert tools_cli("score", "--predictions", systems[1], "--references", DEV, "--report", scored,
                     "--bertscore-model", tiny_bert, "--bertscore-layers", 2, "--bleurt-model", bleurt_spm).exit_code == 0
    assert data["systems"][1]["scores"]["official"] == pytest.approx(load_json(scored)["official"])


def test_mistakes_are_one_line_errors(systems, write_nikl, tmp_path):
    first, second = systems
    fewer = write_nikl(load_json(first)[:3], "fewer.json")
    first = first.rename(first.parent / "compare.json")  # where a report in its folder would write
    empty = write_nikl([{**item, "output": ""} for item in load_json(DEV)], "empty.json")
    (tmp_path / "a-file").write_text("x")
    for args, expected in [
        ([first], "give at least two predictions files to compare (got 1)"),
        ([first, fewer], f"1 id(s) of {DEV} missing from {fewer}"),
        ([first, empty], f"{empty}: all 4 predictions are empty"),
        ([first, second, "--name", "only-one"], "1 --name for 2 predictions files"),
        ([first, second, "--name", "x", "--name", "x"], "--name must be distinct"),
        ([first, second, "--report", tmp_path / "a-file"], "a file is in the way"),
        ([first, second, "--report", first.parent], f"--report {first.parent / 'compare.json'} is the same file as "
                                                    f"input {first}"),
    ]:
        report = [] if "--report" in args else ["--report", tmp_path / "r"]
        message = one_line_error(tools_cli("compare", "--input", DEV, *args, *report))
        assert expected in message, message
    message = one_line_error(tools_cli("compare", "--input", TEST, first, second, "--report", tmp_path / "r"))
    assert "--input needs reference summaries" in message
    assert not (tmp_path / "r").exists()


def test_the_command_calls_4_of_24_changed_not_distinguishable_and_12_distinguishable(write_nikl, tmp_path):
    items = [{**item, "id": f"{item['id']}-{copy}"} for copy in range(6) for item in load_json(DEV)]  # 24 dialogues
    references = write_nikl(items, "dev24.json")
    halves = [{**item, "output": item["output"][: len(item["output"]) // 2]} for item in items]

    def improved(count: int) -> list[dict]:  # the first `count` summaries made whole: better on those only
        return [item if index < count else half for index, (item, half) in enumerate(zip(items, halves))]

    systems = [write_nikl(halves, "base.json"), write_nikl(improved(4), "four.json"),
               write_nikl(improved(12), "twelve.json")]
    result = tools_cli("compare", "--input", references, *systems, "--report", tmp_path / "r")
    assert result.exit_code == 0, result.output
    pairs = {(pair["first"], pair["second"]): pair for pair in load_json(tmp_path / "r" / "compare.json")["pairs"]
             if pair["metric"] == "rouge1"}
    four, twelve, between = pairs["base", "four"], pairs["base", "twelve"], pairs["four", "twelve"]
    # Holm over the three: 3 · 2/2^12, then 2 · 2/2^8, then 1 · 0.125.
    assert (four["differing"], four["p_value"], four["p_adjusted"]) == (4, 0.125, 0.125)
    assert not four["distinguishable"] and four["verdict"].startswith("not distinguishable (only 4 examples differ")
    assert (twelve["differing"], twelve["p_value"], twelve["p_adjusted"]) == (12, 2 / 2**12, 3 * 2 / 2**12)
    assert twelve["distinguishable"] and twelve["verdict"] == "twelve better"
    assert (between["differing"], between["p_adjusted"], between["verdict"]) == (8, 2 * 2 / 2**8, "twelve better")
    assert "| p (Holm, 3 pairs) |" in result.output and "| twelve − base | ROUGE-1 | " in result.output


@pytest.mark.parametrize("command", ["compare", "select-checkpoint"])
@pytest.mark.parametrize("option, value, expected", [
    ("--resamples", 1_000_000_000, "1000000000 is not in the range 10000<=x<=1000000"),
    ("--resamples", 9_999, "9999 is not in the range 10000<=x<=1000000"),
    ("--seed", -1, "-1 is not in the range 0<=x<=4294967295"),
    ("--seed", 2**32, "4294967296 is not in the range 0<=x<=4294967295"),
])
def test_resamples_and_seed_out_of_range_are_usage_errors_before_any_work(command, option, value, expected,
                                                                          systems, tmp_path):
    """Refused where they are parsed: before any file is scored or any checkpoint loaded (the fake checkpoint
    below would fail to load), nothing written."""
    run = tmp_path / "run"
    (run / "checkpoint-1").mkdir(parents=True)
    (run / "checkpoint-1" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    args = (["--input", DEV, *systems, "--report", tmp_path / "r"] if command == "compare"
            else ["--run", run, "--input", DEV, "--no-progress"])
    result = tools_cli(command, *args, option, value)
    assert result.exit_code == 2 and f"Error: Invalid value for '{option}': {expected}" in result.output, result.output
    assert not (tmp_path / "r").exists() and sorted(path.name for path in run.iterdir()) == ["checkpoint-1"]


def test_how_many_examples_the_page_shows_and_korean_names(systems, tmp_path):
    for count, sections in ((2, 2), (0, 0)):
        report = tmp_path / f"r{count}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = tools_cli("compare", "--input", DEV, *systems, "--report", report,
                               "--name", "기본", "--name", "개선", "--examples", count)
        assert result.exit_code == 0, result.output
        assert not [warning for warning in caught if "Glyph" in str(warning.message)]  # not one per character
        page = (report / "report.html").read_text(encoding="utf-8")
        assert page.count('<section class="example">') == sections
        assert ("Where the systems differ most" in page) == bool(count) and "개선 − 기본" in page
