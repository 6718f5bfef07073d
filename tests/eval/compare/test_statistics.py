"""eval/compare/statistics.py: the sign-flip test and the paired bootstrap against hand-computed cases, Holm's
correction, win/tie/loss counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import eval.compare.statistics as compare_module
from eval.compare.statistics import (
    Comparison,
    bootstrap_intervals,
    bootstrap_means,
    compare_pair,
    compare_systems,
    exact_sign_flip_p,
    holm,
    paired_differences,
    per_example_points,
    random_sign_flip_p,
    sign_flip_p,
    win_tie_loss,
)
from eval.metrics import ScoreReport, score_pairs
from helpers import DEV, load_json

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
