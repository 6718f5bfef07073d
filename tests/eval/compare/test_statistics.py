"""`tools compare` and :mod:`eval.compare.statistics`: the sign-flip test and the paired bootstrap against hand-computed cases,
Holm's correction, the report folder (self-contained HTML), the command's one-line errors."""

from __future__ import annotations

import base64
import itertools
import json
import struct
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest

import eval.compare.statistics as compare_module
from helpers import DEV, TEST, load_json, one_line_error, tools_cli
from eval.compare.statistics import (Comparison, bootstrap_intervals, bootstrap_means, compare_pair, compare_systems,
                          exact_sign_flip_p, holm, paired_differences, per_example_points, random_sign_flip_p,
                          sign_flip_p, win_tie_loss)
from eval.metrics import ScoreReport, score_pairs
from test_model_metrics import bleurt_spm, spm_model, tiny_bert  # noqa: F401  (fixtures: tiny BERTScore/BLEURT models)

# ---- the sign-flip test --------------------------------------------------------------------------------------


def changed(n: int, k: int, by: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Two systems on ``n`` examples that differ on the first ``k`` only, the second better by ``by`` points there."""
    first = np.linspace(20, 60, n)
    second = first.copy()
    second[:k] += by
    return first, second


def test_identical_values_differ_by_exactly_zero():
    values = np.random.default_rng(1).uniform(0, 100, 50)
    pair = compare_pair(values, values.copy())
    assert (pair.difference, pair.low, pair.high) == (0.0, 0.0, 0.0)
    assert pair.p_value == pair.p_adjusted == 1.0 and pair.test == "exact"
    assert (pair.wins, pair.ties, pair.losses, pair.differing) == (0, 50, 0, 0)
    assert not pair.distinguishable and pair.verdict == "not distinguishable"


@pytest.mark.parametrize("k, p", [(4, 0.125), (5, 0.0625), (6, 0.03125)])
def test_a_few_changed_examples_all_better_give_the_exact_p(k, p):
    # k of 102 differ, all the same way: 2 of the 2^k sign patterns (all +, all −) are as extreme, p = 2/2^k.
    pair = compare_pair(*changed(102, k), names=("A", "B"))
    assert pair.p_value == p and pair.test == "exact" and pair.differing == k
    # The bootstrap's interval leaves out 0 every time; the test decides: 0.125 and 0.0625 are no verdict.
    assert pair.low > 0
    assert pair.distinguishable == (k == 6)
    assert pair.verdict == ("B better" if k == 6 else f"not distinguishable (only {k} examples differ: too few for a "
                                                       "verdict)")


def test_four_of_24_changed_are_not_distinguishable_and_twelve_are():
    four, twelve = compare_pair(*changed(24, 4)), compare_pair(*changed(24, 12))
    assert (four.p_value, four.distinguishable, four.decidable) == (0.125, False, False)
    assert four.verdict.startswith("not distinguishable (only 4 examples differ")
    assert (twelve.p_value, twelve.distinguishable, twelve.verdict) == (2 / 2**12, True, "second better")


def test_one_example_gets_no_verdict():
    pair = compare_pair([40.0], [72.04], names=("A", "B"))
    assert pair.difference == pytest.approx(32.04) and pair.low == pair.high == pair.difference  # as before …
    assert pair.p_value == 1.0 and not pair.distinguishable  # … but no claim: the only pattern flips to itself
    assert pair.verdict == "not distinguishable (only 1 example differs: too few for a verdict)"


def test_mixed_signs_by_hand():
    # d = (3, 2, −1) and ties: |±3 ± 2 ± 1| over the 8 patterns is 6, 4, 2, 0, 0, 2, 4, 6; observed |4|: 4 of 8.
    first = np.zeros(10)
    second = first.copy()
    second[[2, 5, 7]] = (3.0, 2.0, -1.0)
    pair = compare_pair(first, second)
    assert pair.p_value == 0.5 and (pair.wins, pair.ties, pair.losses) == (2, 7, 1)
    assert exact_sign_flip_p([3.0, 2.0, -1.0, 1e-12]) == 0.5  # a difference within the tie tolerance is a tie


@pytest.mark.parametrize("k", [1, 2, 3, 7, 12])
def test_the_exact_p_counts_every_sign_pattern(k):
    """Meet in the middle gives what listing all 2^k patterns gives."""
    d = np.random.default_rng(k).normal(0.4, 1.0, k).round(2)
    observed = abs(d.sum())
    listed = [abs(np.dot(signs, d)) >= observed - 1e-9 for signs in itertools.product((1, -1), repeat=k)]
    assert exact_sign_flip_p(d) == sum(listed) / 2**k


def test_the_approximate_p_agrees_with_the_exact_one():
    d = np.random.default_rng(7).normal(0.5, 1.0, 20)  # exact: 20 differ
    exact = exact_sign_flip_p(d)
    draws = 100_000
    approximate = random_sign_flip_p(d, draws, seed=3)[0]
    assert 0.01 < exact < 0.5
    assert abs(approximate - exact) < 4 * np.sqrt(exact * (1 - exact) / draws) + 1 / draws  # Monte Carlo error


def test_the_approximate_p_is_the_documented_procedure():
    d = np.random.default_rng(5).integers(-20, 30, 40).astype(float)  # integer points: sums are exact
    resamples, seed = 10_000, 11
    signs = 1 - 2 * np.random.default_rng(seed).integers(0, 2, size=(resamples, 40), dtype=np.int8)
    extreme = (np.abs(signs.astype(float) @ d) >= abs(d.sum())).sum()
    p, tests = sign_flip_p(np.stack([d, 2 * d, np.zeros(40)], axis=1), resamples, seed)
    assert p[0] == (extreme + 1) / (resamples + 1) and tests == ["approximate", "approximate", "exact"]
    assert p[1] == p[0] and p[2] == 1.0  # the same patterns for every column (doubling d changes no comparison)
    assert sign_flip_p(d, resamples, seed)[0][0] == p[0]  # whatever columns are computed with it
    pair = compare_pair(np.zeros(40), d, resamples=resamples, seed=seed)
    assert pair.p_value == p[0] and pair.test == "approximate"


def test_more_than_the_exact_limit_is_approximate_and_never_zero():
    first, second = changed(40, 40)
    pair = compare_pair(first, second, names=("A", "B"))
    assert pair.test == "approximate" and pair.p_value == 1 / (10_000 + 1) and pair.verdict == "B better"
    assert compare_pair(*changed(40, 32)).test == "exact"


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3·0.01; 2·0.03; max(1·0.04, 0.06)
    assert holm([0.5]) == pytest.approx([0.5]) and holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_three_systems_are_holm_adjusted_per_metric():
    # On 24 examples: B = A + 1 on 12, C = A + 1 on 6 of those. Raw p: B−A 2/2^12; C−A and C−B (6 differ) 2/2^6.
    a = np.zeros(24)
    b, c = a.copy(), a.copy()
    b[:12], c[:6] = 1.0, 1.0
    scores = {"A": {"m": a, "n": a}, "B": {"m": b, "n": a}, "C": {"m": c, "n": c}}
    pairs = paired_differences(scores, [("A", "B"), ("A", "C"), ("B", "C")], ["m", "n"])
    m = {(pair.first, pair.second): pair for pair in pairs if pair.metric == "m"}
    assert [m[key].p_value for key in m] == [2 / 2**12, 2 / 2**6, 2 / 2**6]
    # Holm: 3 · 2/2^12 = 0.00146…; then 2 · 1/32 = 0.0625; then max(1 · 1/32, 0.0625).
    assert [m[key].p_adjusted for key in m] == [3 * 2 / 2**12, 0.0625, 0.0625]
    assert [m[key].verdict for key in m] == ["B better", "not distinguishable", "not distinguishable"]
    assert m["A", "C"].p_value < 0.05 < m["A", "C"].p_adjusted  # the raw p alone would have claimed C better
    # Another metric, another family: raw 1, 1/32, 1/32 → 3 · 1/32, max(2 · 1/32, 3/32), 1 · 1.
    n = {(pair.first, pair.second): pair for pair in pairs if pair.metric == "n"}
    assert [n[key].p_adjusted for key in n] == [1.0, 3 / 32, 3 / 32]


def test_resamples_and_seed_are_checked_before_any_work():
    for kwargs, expected in [({"resamples": 1_000_000_000}, "resamples must be between 10,000 and 1,000,000"),
                             ({"resamples": 100}, "resamples must be between"),
                             ({"seed": -1}, "seed must be between 0 and 4,294,967,295"),
                             ({"seed": 2**32}, "seed must be between")]:
        with pytest.raises(ValueError, match=expected):
            compare_pair([1.0, 2.0], [2.0, 3.0], **kwargs)


# ---- the bootstrap interval ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [5.0, -2.5])
def test_a_constant_shift_is_the_difference_and_its_whole_interval(shift):
    first = np.arange(40, dtype=float)  # integers and halves: every sum below is exact in floating point
    pair = compare_pair(first, first + shift, names=("A", "B"))
    assert (pair.difference, pair.low, pair.high) == (shift, shift, shift)
    assert pair.distinguishable and pair.verdict == ("B better" if shift > 0 else "A better")
    assert (pair.wins, pair.ties, pair.losses) == ((40, 0, 0) if shift > 0 else (0, 0, 40))


def test_two_examples_match_the_exact_bootstrap_distribution():
    # d = (0, 2): a resample of two examples has mean 0 (both the first, chance 1/4), 1 (1/2) or 2 (1/4).
    low, high = bootstrap_intervals(np.array([0.0, 2.0]), resamples=20_000, seed=3)
    assert (low[0], high[0]) == (0.0, 2.0)  # the 2.5 % and 97.5 % quantiles of that distribution
    means = bootstrap_means(np.array([0.0, 2.0]), resamples=20_000, seed=3)[:, 0]
    assert [np.mean(means == value) for value in (0, 1, 2)] == pytest.approx([0.25, 0.5, 0.25], abs=0.02)


def test_a_seeded_interval_is_reproduced_exactly_by_the_documented_procedure(monkeypatch):
    d = np.random.default_rng(5).integers(-20, 30, 37).astype(float)  # integer points: sums are exact
    resamples, seed = 10_000, 11
    pair = compare_pair(np.zeros_like(d), d, resamples=resamples, seed=seed)
    # By hand, as the module docstring describes it: 10,000 × 37 draws fit in one block.
    picks = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    means = d[picks].sum(axis=1) / len(d)
    low, high = np.quantile(means, [(1 - 0.95) / 2, (1 + 0.95) / 2])  # (1 − 0.95)/2 is not quite 0.025
    assert (pair.low, pair.high) == (low, high) and pair.difference == d.mean()
    again = compare_pair(np.zeros_like(d), d, resamples=resamples, seed=seed)
    other = compare_pair(np.zeros_like(d), d, resamples=resamples, seed=seed + 1)
    assert again == pair and (other.low, other.high) != (pair.low, pair.high)
    # In blocks of ⌊2^20 / n⌋ resamples (made ⌊1000 / 37⌋ = 27 here), each drawn in turn from one generator.
    monkeypatch.setattr(compare_module, "_BLOCK_VALUES", 1000)
    rng = np.random.default_rng(seed)
    picks = np.concatenate([rng.integers(0, len(d), size=(min(27, resamples - start), len(d)))
                            for start in range(0, resamples, 27)])
    assert np.array_equal(bootstrap_means(d, resamples, seed)[:, 0], d[picks].sum(axis=1) / len(d))


def test_columns_resampled_in_groups_get_the_intervals_they_get_together(monkeypatch):
    columns = np.random.default_rng(0).normal(0, 1, (30, 5))
    together = bootstrap_intervals(columns, 10_000, seed=4)
    monkeypatch.setattr(compare_module, "_HELD_MEANS", 20_000)  # two columns of 10,000 means at a time
    assert all(np.array_equal(a, b) for a, b in zip(bootstrap_intervals(columns, 10_000, seed=4), together))


def test_all_pairs_and_metrics_share_the_resamples():
    rng = np.random.default_rng(0)
    columns = rng.normal(0, 1, (30, 3))
    together = bootstrap_means(columns, 10_000, seed=4)
    for index in range(3):
        assert np.array_equal(together[:, index], bootstrap_means(columns[:, index], 10_000, seed=4)[:, 0])


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
    comparison = compare_systems(references, {"A": first, "B": second, "A again": first})
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
    with pytest.raises(ValueError, match="more than 32 to enumerate"):
        exact_sign_flip_p(np.ones(33))


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


# ---- select-checkpoint's intervals against the best ---------------------------------------------------------


def selection_of(per_example: dict[str, list[float]]):
    """Rows, one per checkpoint (steps 1, 2, …), compared with the winner as select-checkpoint does."""
    from training.selection import Row, Selection, compare_with_best, winner

    values = {name: np.array(points, dtype=float) for name, points in per_example.items()}
    rows = [Row(name, name, step, None, None, {"rouge1": float(values[name].mean())}, 1.0, "")
            for step, name in enumerate(values, start=1)]
    best = winner(rows, "rouge1")
    compare_with_best(rows, best, values, "rouge1", resamples=10_000, seed=0)
    return Selection("rouge1", rows, best, 10_000, 0)


def test_selection_rows_carry_their_interval_and_test_against_the_best():
    selection = selection_of({"checkpoint-1": [10, 20, 30, 40], "checkpoint-2": [10, 24, 26, 44],
                              "checkpoint-3": [11, 21, 31, 41], "final": [10, 24, 26, 44]})  # 25, 26, 26, 26
    first, best, third, final = selection.rows
    assert selection.best is best  # ties still go to the earliest step
    assert best.vs_best is None
    assert (final.vs_best["difference"], final.vs_best["low"], final.vs_best["high"]) == (0.0, 0.0, 0.0)
    assert final.vs_best["p_value"] == 1.0 and final.vs_best["differing"] == 0
    assert third.vs_best["difference"] == 0.0 and third.vs_best["low"] < 0 < third.vs_best["high"]
    assert first.vs_best["difference"] == -1.0 and (first.vs_best["wins"], first.vs_best["ties"],
                                                    first.vs_best["losses"]) == (1, 1, 2)
    assert [row.name for row in selection.within_noise] == ["checkpoint-1", "checkpoint-3", "final"]
    assert selection.noise_line().startswith("checkpoint-2 is best by ROUGE-1, but the choice is within noise: ")
    table = selection.table()
    assert "Δ ROUGE-1 vs best [95 % interval] | p (Holm, 3) |" in table.splitlines()[0]
    assert "| +0.00 [+0.00, +0.00] (within noise) | 1.000 |" in table
    assert "(within noise: only 3 differ) |" in table  # checkpoint-1: 3 of 4 differ, no verdict possible
    assert selection.to_json()["within_noise"] == ["checkpoint-1", "checkpoint-3", "final"]
    assert selection.markdown() == f"{table}\n\n{selection.noise_line()}\n"


def test_selection_says_when_the_winner_is_beyond_noise():
    selection = selection_of({"checkpoint-1": list(range(30)), "checkpoint-2": [value + 3 for value in range(30)]})
    first = selection.rows[0]
    assert selection.within_noise == [] and first.vs_best["high"] == -3.0 and first.vs_best["p_value"] == 2 / 2**30
    assert selection.noise_line() == (
        "checkpoint-2 is best by ROUGE-1; every other checkpoint is worse beyond noise (paired sign-flip test over "
        "30 dev dialogues, beyond noise when p ≤ 0.05; 10,000 resamples, seed 0).")
    assert "| -3.00 [-3.00, -3.00] | < 0.001 |" in selection.table()


def test_within_noise_follows_the_test_not_the_interval():
    base = [float(value) for value in range(30)]

    def worse_on(count: int) -> list[float]:
        return [value - (5 if index < count else 0) for index, value in enumerate(base)]

    # Worse on 4 of 30: the bootstrap interval leaves out 0, but 4 differing examples cannot reach p ≤ 0.05.
    selection = selection_of({"checkpoint-1": worse_on(4), "checkpoint-2": base})
    first = selection.rows[0]
    assert first.vs_best["high"] < 0 and first.vs_best["p_value"] == 0.125
    assert [row.name for row in selection.within_noise] == ["checkpoint-1"]
    assert "-0.67 [-1.33, -0.17] (within noise: only 4 differ)" in selection.table()
    # Worse on 6 (raw p 2/2^6) twice and on 12 (2/2^12): Holm over the three puts both 6s above 0.05.
    selection = selection_of({"checkpoint-1": worse_on(6), "checkpoint-2": worse_on(12), "checkpoint-3": worse_on(6),
                              "checkpoint-4": base})
    assert [row.vs_best["p_value"] for row in selection.rows[:3]] == [2 / 2**6, 2 / 2**12, 2 / 2**6]
    assert [row.vs_best["p_adjusted"] for row in selection.rows[:3]] == [0.0625, 3 * 2 / 2**12, 0.0625]
    assert [row.name for row in selection.within_noise] == ["checkpoint-1", "checkpoint-3"]
    assert "Holm-adjusted over the 3 compared" in selection.noise_line()


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


# ---- the demo's table: what DPO changed, the comparison -----------------------------------------------------


def test_dpo_rewards_are_read_from_the_last_trainer_state(tmp_path):
    from demo.pipeline import dpo_rewards_of

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
    assert dpo_rewards_of(tmp_path) == "reward accuracy 0.00 → 0.50, margin +0.000453 (training batch, steps 1–3)"
    state(11, [*train, {"step": 3, "eval_loss": 0.6, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.02}])
    assert dpo_rewards_of(tmp_path) == "reward accuracy 0.75 → 0.75, margin +0.02 (held-out pairs, steps 3–3)"
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 0.7}]}))
    assert dpo_rewards_of(tmp_path) == "no reward metrics logged"  # the run's own state comes first


def test_the_demo_notes_changed_summaries_the_noise_and_the_comparison(write_nikl, systems, tmp_path):
    from demo.pipeline import changed_share, compared_of, selected_of

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
    assert changed_share(same, edited) == "2/4 dev summaries differ from the DPO start's"
    assert changed_share(same, same) == "0/4 dev summaries differ from the DPO start's"
    report = tmp_path / "r"
    assert tools_cli("compare", "--input", DEV, *systems, systems[0], "--name", "SFT", "--name", "DPO", "--name",
                     "again", "--report", report).exit_code == 0
    pairs = {pair["second"]: pair for pair in load_json(report / "compare.json")["pairs"]
             if pair["first"] == "SFT" and pair["metric"] == "rouge1"}
    dpo = pairs["DPO"]
    assert compared_of(report / "compare.json") == (
        f"ROUGE-1 vs SFT: DPO {dpo['difference']:+.2f} [{dpo['low']:+.2f}, {dpo['high']:+.2f}] {dpo['verdict']}; "
        "again +0.00 [+0.00, +0.00] not distinguishable")
