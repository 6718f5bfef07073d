"""`tools compare` and :mod:`eval.compare`: the paired bootstrap against hand-computed cases, the report folder
(self-contained HTML), the command's one-line errors."""

from __future__ import annotations

import base64
import json
import struct
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import DEV, TEST, load_json, one_line_error, tools_cli
from eval.compare import (Comparison, bootstrap_means, compare_systems, paired_bootstrap, paired_differences,
                          per_example_points, win_tie_loss)
from eval.metrics import ScoreReport, score_pairs
from test_model_metrics import bleurt_spm, spm_model, tiny_bert  # noqa: F401  (fixtures: tiny BERTScore/BLEURT models)

# ---- statistics --------------------------------------------------------------------------------------------


def test_identical_values_differ_by_exactly_zero():
    values = np.random.default_rng(1).uniform(0, 100, 50)
    pair = paired_bootstrap(values, values.copy(), resamples=2000)
    assert (pair.difference, pair.low, pair.high) == (0.0, 0.0, 0.0)
    assert pair.p_value == 1.0
    assert (pair.wins, pair.ties, pair.losses) == (0, 50, 0)
    assert not pair.distinguishable and pair.verdict == "not distinguishable"


@pytest.mark.parametrize("shift", [5.0, -2.5])
def test_a_constant_shift_is_the_difference_and_its_whole_interval(shift):
    first = np.arange(40, dtype=float)  # integers and halves: every sum below is exact in floating point
    pair = paired_bootstrap(first, first + shift, names=("A", "B"), resamples=999)
    assert (pair.difference, pair.low, pair.high) == (shift, shift, shift)
    assert pair.distinguishable and pair.verdict == ("B better" if shift > 0 else "A better")
    assert pair.p_value == 2 / 1000  # no resampled mean on the other side of 0: 2·(0 + 1)/(999 + 1)
    assert (pair.wins, pair.ties, pair.losses) == ((40, 0, 0) if shift > 0 else (0, 0, 40))


def test_two_examples_match_the_exact_bootstrap_distribution():
    # d = (0, 2): a resample of two examples has mean 0 (both the first, chance 1/4), 1 (1/2) or 2 (1/4).
    pair = paired_bootstrap([10.0, 10.0], [10.0, 12.0], resamples=20_000, seed=3)
    assert pair.difference == 1.0
    assert (pair.low, pair.high) == (0.0, 2.0)  # the 2.5 % and 97.5 % quantiles of that distribution
    assert pair.verdict == "not distinguishable"
    assert pair.p_value == pytest.approx(2 * 0.25, abs=0.02)  # twice P(mean ≤ 0)


def test_a_seeded_interval_is_reproduced_exactly_by_the_documented_procedure():
    d = np.random.default_rng(5).integers(-20, 30, 37).astype(float)  # integer points: sums are exact
    resamples, seed = 3000, 11
    pair = paired_bootstrap(np.zeros_like(d), d, resamples=resamples, seed=seed)
    # By hand, as the module docstring describes it.
    picks = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    means = np.array([sum(d[index] for index in row) / len(d) for row in picks])
    low, high = np.quantile(means, [0.025, 0.975])
    k = min((means <= 0).sum(), (means >= 0).sum())
    assert (pair.low, pair.high) == (low, high)
    assert pair.p_value == min(1.0, 2 * (k + 1) / (resamples + 1))
    assert pair.difference == d.mean()
    again = paired_bootstrap(np.zeros_like(d), d, resamples=resamples, seed=seed)
    other = paired_bootstrap(np.zeros_like(d), d, resamples=resamples, seed=seed + 1)
    assert again == pair and (other.low, other.high) != (pair.low, pair.high)


def test_all_pairs_and_metrics_share_the_resamples():
    rng = np.random.default_rng(0)
    columns = rng.normal(0, 1, (30, 3))
    together = bootstrap_means(columns, 500, seed=4)
    for index in range(3):
        assert np.array_equal(together[:, index], bootstrap_means(columns[:, index], 500, seed=4)[:, 0])


def test_win_tie_loss_counts():
    assert win_tie_loss([1, 2, 3, 4, 5], [2, 2, 1, 4 + 1e-12, 7]) == (2, 2, 1)  # 1e-12 apart is a tie


def test_official_per_example_is_the_mean_of_its_parts():
    report = ScoreReport(["a", "b"], values={"rouge1": [0.5, 0.25], "rouge2": [0.1, 0.0], "rougeL": [0.5, 0.2],
                                             "bertscore": [0.8, 0.7], "bleurt": [0.2, 0.4]})
    points = per_example_points(report)
    assert points["official"] == pytest.approx([50.0, 45.0])
    assert points["official"].mean() == pytest.approx(report.score("official"))
    assert "official" not in per_example_points(ScoreReport(["a"], values={"rouge1": [0.5]}))


def test_compare_systems_uses_score_pairs_values_and_orders_pairs():
    items = load_json(DEV)
    references = [item["output"] for item in items]
    first = [text[: len(text) // 2] for text in references]
    second = [text[len(text) // 3:] for text in references]
    comparison = compare_systems(references, {"A": first, "B": second, "A again": first}, resamples=1000)
    assert isinstance(comparison, Comparison) and comparison.metrics == ["rouge1", "rouge2", "rougeL"]
    expected = score_pairs(second, references, ("rouge",))
    assert comparison.scores["B"]["rouge1"] == pytest.approx([100 * value for value in expected.values["rouge1"]])
    assert [(pair.first, pair.second) for pair in comparison.pairs[::3]] == [("A", "B"), ("A", "A again"),
                                                                            ("B", "A again")]
    b_minus_a = comparison.pairs[0]
    assert b_minus_a.metric == "rouge1"
    assert b_minus_a.difference == pytest.approx(expected.score("rouge1") - comparison.mean("A", "rouge1"))
    assert all(pair.difference == 0.0 and pair.verdict == "not distinguishable"
               for pair in comparison.pairs if pair.second == "A again" and pair.first == "A")
    spread = np.abs(comparison.scores["B"]["rouge1"] - comparison.scores["A"]["rouge1"])
    assert comparison.most_different(2) == list(np.argsort(-spread, kind="stable")[:2])


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="at least two systems"):
        compare_systems(["a"], {"only": ["a"]})
    with pytest.raises(ValueError, match="different lengths"):
        paired_differences({"A": {"m": [1.0]}, "B": {"m": [1.0, 2.0]}}, [("A", "B")], ["m"])
    with pytest.raises(ValueError, match="no examples"):
        bootstrap_means(np.zeros((0, 1)))


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


@pytest.fixture
def systems(write_nikl):
    """Two submissions on the dev fixture: halves of the reference, and a summary with markup in it."""
    items = load_json(DEV)
    first = write_nikl([{**item, "output": item["output"][: len(item["output"]) // 2]} for item in items], "sft.json")
    second = [{**item, "output": item["output"][len(item["output"]) // 3:]} for item in items]
    second[0]["output"] = "<script>alert('x')</script> & " + second[0]["output"]
    return first, write_nikl(second, "dpo.json")


def test_the_report_folder(systems, tmp_path):
    report = tmp_path / "report"
    result = tools_cli("compare", "--input", DEV, *systems, "--report", report, "--resamples", 500)
    assert result.exit_code == 0, result.output
    names = sorted(path.name for path in report.iterdir())
    assert names == ["compare.json", "compare.md", "differences.png", "distributions.png", "lengths.png",
                     "report.html", "score_vs_length.png"]
    for name in names:
        if name.endswith(".png"):
            assert png_size((report / name).read_bytes()) == (800, 450)
    data = load_json(report / "compare.json")
    assert [system["name"] for system in data["systems"]] == ["sft", "dpo"]
    assert data["n"] == 4 and data["resamples"] == 500 and data["seed"] == 0 and data["metrics"] == ["rouge1", "rouge2",
                                                                                                    "rougeL"]
    assert [(pair["first"], pair["second"], pair["metric"]) for pair in data["pairs"]] == [
        ("sft", "dpo", "rouge1"), ("sft", "dpo", "rouge2"), ("sft", "dpo", "rougeL")]
    rouge1 = data["pairs"][0]
    per_example = [row["systems"]["dpo"]["rouge1"] - row["systems"]["sft"]["rouge1"] for row in data["per_example"]]
    assert rouge1["difference"] == pytest.approx(sum(per_example) / 4)
    assert rouge1["wins"] + rouge1["ties"] + rouge1["losses"] == 4
    table = (report / "compare.md").read_text(encoding="utf-8")
    assert f"{rouge1['difference']:+.2f} [{rouge1['low']:+.2f}, {rouge1['high']:+.2f}]" in table
    assert "| dpo − sft | ROUGE-1 |" in table and "![differences.png](differences.png)" in table
    assert table.split("## Pairs")[1].split("## Pictures")[0].strip() in result.output


def test_the_html_page_is_self_contained_valid_and_escaped(systems, tmp_path):
    report = tmp_path / "report"
    assert tools_cli("compare", "--input", DEV, *systems, "--report", report, "--resamples", 200,
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


def test_identical_files_are_not_distinguishable(systems, tmp_path):
    first, _ = systems
    result = tools_cli("compare", "--references", DEV, first, first, "--report", tmp_path / "r", "--resamples", 300)
    assert result.exit_code == 0, result.output
    data = load_json(tmp_path / "r" / "compare.json")
    assert [system["name"] for system in data["systems"]] == ["sft", "sft #2"]
    for pair in data["pairs"]:
        assert (pair["difference"], pair["low"], pair["high"], pair["p_value"]) == (0.0, 0.0, 0.0, 1.0)
        assert pair["verdict"] == "not distinguishable" and pair["ties"] == 4
    assert "Every system scores the same" in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")


def test_model_metrics_and_the_official_mean_when_their_weights_are_given(systems, tmp_path, tiny_bert, bleurt_spm):
    report = tmp_path / "report"
    result = tools_cli("compare", "--input", DEV, *systems, "--report", report, "--resamples", 200,
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


# ---- select-checkpoint's intervals against the best ---------------------------------------------------------


def test_selection_rows_carry_their_interval_against_the_best():
    from workflow.selection import Row, Selection, compare_with_best, winner

    per_example = {"checkpoint-1": [10, 20, 30, 40], "checkpoint-2": [10, 24, 26, 44], "checkpoint-3": [11, 21, 31, 41],
                   "final": [10, 24, 26, 44]}  # 25, 26, 26, 26 on average; final = checkpoint-2
    values = {name: np.array(points, dtype=float) for name, points in per_example.items()}
    rows = [Row(name, name, step, None, None, {"rouge1": float(values[name].mean())}, 1.0, "")
            for name, step in (("checkpoint-1", 1), ("checkpoint-2", 2), ("checkpoint-3", 3), ("final", 3))]
    best = winner(rows, "rouge1")
    assert best.name == "checkpoint-2"  # ties still go to the earliest step
    compare_with_best(rows, best, values, "rouge1", resamples=500, seed=0)
    selection = Selection("rouge1", rows, best, 500, 0)
    first, _, third, final = rows
    assert best.vs_best is None
    assert (final.vs_best["difference"], final.vs_best["low"], final.vs_best["high"]) == (0.0, 0.0, 0.0)
    assert third.vs_best["difference"] == 0.0 and third.vs_best["low"] < 0 < third.vs_best["high"]
    assert first.vs_best["difference"] == -1.0 and (first.vs_best["wins"], first.vs_best["ties"],
                                                    first.vs_best["losses"]) == (1, 1, 2)
    within = [row.name for row in rows if row.vs_best and row.vs_best["low"] <= 0 <= row.vs_best["high"]]
    assert [row.name for row in selection.within_noise] == within and {"checkpoint-3", "final"} <= set(within)
    assert selection.noise_line().startswith("checkpoint-2 is best by ROUGE-1, but the choice is within noise: ")
    table = selection.table()
    assert "Δ ROUGE-1 vs best [95 % interval] | p |" in table.splitlines()[0]
    assert "| +0.00 [+0.00, +0.00] (within noise) | 1.000 |" in table
    assert selection.to_json()["within_noise"] == within
    assert selection.markdown() == f"{table}\n\n{selection.noise_line()}\n"


def test_selection_says_when_the_winner_is_beyond_noise():
    from workflow.selection import Row, Selection, compare_with_best

    values = {"checkpoint-1": np.arange(30, dtype=float), "checkpoint-2": np.arange(30, dtype=float) + 3}
    rows = [Row(name, name, step, None, None, {"rouge1": float(values[name].mean())}, 1.0, "")
            for name, step in (("checkpoint-1", 1), ("checkpoint-2", 2))]
    compare_with_best(rows, rows[1], values, "rouge1", resamples=500, seed=0)
    selection = Selection("rouge1", rows, rows[1], 500, 0)
    assert selection.within_noise == [] and rows[0].vs_best["high"] == -3.0
    assert selection.noise_line() == ("checkpoint-2 is best by ROUGE-1; every other checkpoint is worse beyond noise "
                                      "(95 % paired-bootstrap interval over 30 dev dialogues, 500 resamples, seed 0).")
    assert "| -3.00 [-3.00, -3.00] | 0.004 |" in selection.table()


def test_how_many_examples_the_page_shows_and_korean_names(systems, tmp_path):
    for count, sections in ((2, 2), (0, 0)):
        report = tmp_path / f"r{count}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = tools_cli("compare", "--input", DEV, *systems, "--report", report, "--resamples", 200,
                               "--name", "기본", "--name", "개선", "--examples", count)
        assert result.exit_code == 0, result.output
        assert not [warning for warning in caught if "Glyph" in str(warning.message)]  # not one per character
        page = (report / "report.html").read_text(encoding="utf-8")
        assert page.count('<section class="example">') == sections
        assert ("Where the systems differ most" in page) == bool(count) and "개선 − 기본" in page


# ---- the demo's table: what DPO changed, the comparison -----------------------------------------------------


def test_dpo_rewards_are_read_from_the_last_trainer_state(tmp_path):
    from workflow.demo import dpo_rewards_of

    def state(step, history):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))

    assert dpo_rewards_of(tmp_path) == "no trainer_state.json"
    # As TRL's DPOTrainer logs them: rewards/… per training step, eval_rewards/… per evaluation.
    train = [{"step": step, "loss": 0.69, "rewards/accuracies": accuracy, "rewards/margins": margin}
             for step, accuracy, margin in ((1, 0.0, 0.0), (2, 1.0, 0.000168), (3, 0.5, 0.000453))]
    state(2, train[:2])
    state(10, train)  # the highest step, not the last in name order
    assert dpo_rewards_of(tmp_path) == "reward accuracy 0.50, margin +0.000453 (training batch, step 3)"
    state(11, [*train, {"step": 3, "eval_loss": 0.6, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.02}])
    assert dpo_rewards_of(tmp_path) == "reward accuracy 0.75, margin +0.02 (held-out pairs, step 3)"
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 0.7}]}))
    assert dpo_rewards_of(tmp_path) == "no reward metrics logged"  # the run's own state comes first


def test_the_demo_notes_changed_summaries_the_noise_and_the_comparison(write_nikl, systems, tmp_path):
    from workflow.demo import changed_share, compared_of, selected_of

    rows = [{"name": "checkpoint-1", "metrics": {"rouge1": 4.5}}, {"name": "checkpoint-2", "metrics": {"rouge1": 5.125}}]
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"best": "checkpoint-2", "rows": rows, "within_noise": ["checkpoint-1"]}))
    assert selected_of(selection) == "selected checkpoint-2 (ROUGE-1 5.12); within noise of it: checkpoint-1"
    selection.write_text(json.dumps({"best": "checkpoint-2", "rows": rows, "within_noise": []}))
    assert selected_of(selection) == "selected checkpoint-2 (ROUGE-1 5.12); the others are worse beyond noise"

    items = load_json(DEV)
    same = write_nikl(items, "same.json")
    edited = write_nikl([{**item, "output": item["output"] + (" 끝." if index % 2 else "")}
                         for index, item in enumerate(items)], "edited.json")
    assert changed_share(same, edited) == "2/4 dev summaries differ from SFT's"
    assert changed_share(same, same) == "0/4 dev summaries differ from SFT's"
    report = tmp_path / "r"
    assert tools_cli("compare", "--input", DEV, *systems, systems[0], "--name", "SFT", "--name", "DPO", "--name",
                     "again", "--report", report, "--resamples", 200).exit_code == 0
    pairs = {pair["second"]: pair for pair in load_json(report / "compare.json")["pairs"]
             if pair["first"] == "SFT" and pair["metric"] == "rouge1"}
    dpo = pairs["DPO"]
    assert compared_of(report / "compare.json") == (
        f"ROUGE-1 vs SFT: DPO {dpo['difference']:+.2f} [{dpo['low']:+.2f}, {dpo['high']:+.2f}] {dpo['verdict']}; "
        "again +0.00 [+0.00, +0.00] not distinguishable")
