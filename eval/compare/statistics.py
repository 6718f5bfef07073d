"""Is a difference between two systems real? A paired sign-flip test, with paired-bootstrap intervals.

Every system is scored on the same examples, so what matters is the per-example difference
``d_i = second_i − first_i`` (0–100 points, one metric). For each pair of systems:

* **difference** — the mean of ``d`` (= the difference of the two corpus scores);
* **interval** — the paired percentile bootstrap: ``resamples`` times, draw ``n`` example indices with
  replacement and take the mean of ``d`` over them; the interval is the ``(1 − confidence)/2`` and
  ``(1 + confidence)/2`` quantiles of those means (numpy's default linear interpolation). The indices come
  from ``numpy.random.default_rng(seed)``, ``integers(0, n, (rows, n))`` for blocks of
  ``rows = ⌊2**20 / n⌋`` resamples in turn (the last one shorter), so memory stays bounded. Every pair and
  every metric is resampled with the same index sets. The interval describes the size of the difference;
  the test decides;
* **p** — two-sided, from a paired permutation test, the *sign-flip* test of the mean difference: were the
  two systems interchangeable, each ``d_i`` would be as likely as ``−d_i``; ``p`` is the share of the
  ``2^k`` sign patterns ``s`` of the ``k`` examples that differ (``|d_i|`` > :data:`TIE_TOLERANCE`; a tie
  flips to itself) whose ``|Σ s_i·d_i|`` is at least the observed ``|Σ d_i|``. **Exact** — every pattern
  counted (:func:`exact_sign_flip_p`) — when ``k`` ≤ :data:`EXACT_UP_TO`; otherwise **approximate
  randomisation**: ``resamples`` random patterns (each sign ±1 with chance ½, from
  ``numpy.random.default_rng(seed)``, ``integers(0, 2, (rows, n))`` per block as above, over all ``n``
  examples so that every pair shares them) and ``p = (#{at least as extreme} + 1)/(resamples + 1)``, which
  never claims 0. The smallest ``p`` that ``k`` differing examples can give is ``2/2^k``: with 5 or fewer,
  none reaches 0.05;
* **p_adjusted** — Holm's step-down correction over the pairs of one metric (a report of three systems has
  three pairs per metric); equal to ``p`` when there is one pair;
* **wins / ties / losses** — examples where the second system scores higher / the same (within 1e-9) /
  lower; ``differing`` = wins + losses = ``k``;
* **verdict** — "<system> better" when ``p_adjusted`` ≤ ``1 − confidence``, else "not distinguishable"
  (saying so when too few examples differ for any verdict: ``2/2^k > 1 − confidence``).

Why a sign-flip test and not the bootstrap's own p: the percentile bootstrap is anti-conservative when few
examples differ — 4 changed summaries out of 102, all better, gave a bootstrap p of 0.030 where the exact
test gives 0.125 — and a single example gave an interval of one point and p < 0.001. docs/compare.md has
the literature (Koehn 2004; Riezler & Maxwell 2005; Dror et al. 2018) and the numbers.

Identical inputs give ``d = 0`` everywhere, hence a difference and interval of exactly 0, p = 1 and "not
distinguishable". :func:`compare_systems` scores several systems with :func:`eval.metrics.score_pairs` (no
metric is re-implemented here) and compares every pair; :func:`compare_pair` compares two arrays of
per-example values. Both are plain Python/numpy, usable from a notebook.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from eval.metrics import ScoreReport, score_pairs
from eval.registry import LABELS, NAMES, OFFICIAL_PARTS

RESAMPLES = 10_000
MIN_RESAMPLES, MAX_RESAMPLES = 10_000, 1_000_000  # bootstrap resamples = random sign patterns: at least 10,000
SEED = 0
MAX_SEED = 2**32 - 1  # seeds are 0 … 2^32 − 1, as numpy's and torch's generators are usually seeded
CONFIDENCE = 0.95
TIE_TOLERANCE = 1e-9  # points: per-example scores closer than this are a tie
FEW_EXAMPLES = 30  # below this many examples the report warns that the intervals are rough
EXACT_UP_TO = 32  # differing examples up to which the p of all 2^k sign patterns is exact (2 × 2^16 sums held)
_BLOCK_VALUES = 2**20  # random draws held at once (a block of resamples × examples)
_HELD_MEANS = 2**23  # resampled means held at once (64 MiB): columns are bootstrapped in groups below it


def check_resamples(resamples: int) -> int:
    if not MIN_RESAMPLES <= resamples <= MAX_RESAMPLES:
        raise ValueError(f"resamples must be between {MIN_RESAMPLES:,} and {MAX_RESAMPLES:,}, got {resamples:,}")
    return resamples


def check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED:,}, got {seed:,}")
    return seed


def smallest_p(differing: int) -> float:
    """The smallest two-sided p the sign-flip test can give when ``differing`` examples differ: ``2/2^k`` (the
    observed pattern and its mirror image), 1 when none or one does."""
    return 1.0 if differing <= 1 else 2.0 ** (1 - differing)


@dataclass(frozen=True)
class PairedDifference:
    """``second − first`` on one metric, over the same examples (0–100 points)."""

    first: str
    second: str
    metric: str
    n: int
    first_mean: float
    second_mean: float
    difference: float
    low: float
    high: float
    p_value: float  # the sign-flip test's two-sided p for this pair alone
    p_adjusted: float  # Holm-adjusted over the pairs of this metric: what the verdict uses
    test: str  # "exact" (every sign pattern) or "approximate" (random sign patterns)
    wins: int  # examples where ``second`` scores higher
    ties: int
    losses: int
    confidence: float = CONFIDENCE

    @property
    def differing(self) -> int:
        return self.wins + self.losses

    @property
    def alpha(self) -> float:
        return 1 - self.confidence

    @property
    def decidable(self) -> bool:
        """Whether enough examples differ for the test to reach ``alpha`` at all (``2/2^k`` ≤ alpha)."""
        return smallest_p(self.differing) <= self.alpha

    @property
    def distinguishable(self) -> bool:
        return self.p_adjusted <= self.alpha and self.difference != 0

    @property
    def verdict(self) -> str:
        if self.distinguishable:
            return f"{self.second if self.difference > 0 else self.first} better"
        if self.differing and not self.decidable:
            return f"not distinguishable ({self.few_text()})"
        return "not distinguishable"

    def few_text(self) -> str:
        """Why no verdict is possible: too few examples differ."""
        examples = "example differs" if self.differing == 1 else "examples differ"
        return f"only {self.differing} {examples}: too few for a verdict"

    def p_text(self) -> str:
        """The p the verdict uses (Holm-adjusted), as the tables show it."""
        return "< 0.001" if self.p_adjusted < 0.001 else f"{self.p_adjusted:.3f}"

    def interval_text(self, digits: int = 2) -> str:
        return f"{self.difference:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "differing": self.differing, "smallest_p": smallest_p(self.differing),
                "decidable": self.decidable, "distinguishable": self.distinguishable, "verdict": self.verdict}


def _columns(differences: Any) -> np.ndarray:
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim == 1:
        differences = differences[:, None]
    if differences.shape[0] == 0:
        raise ValueError("nothing to compare: no examples")
    return differences


def _blocks(resamples: int, n: int) -> Iterator[tuple[int, int]]:
    """``(start, rows)`` of the blocks of resamples drawn at once: about :data:`_BLOCK_VALUES` draws each."""
    size = max(1, _BLOCK_VALUES // n)
    for start in range(0, resamples, size):
        yield start, min(size, resamples - start)


def bootstrap_means(differences: Any, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Means of each column of ``differences`` (``n`` examples × ``c`` columns) over ``resamples`` sets of
    ``n`` examples drawn with replacement — the same sets for every column: shape ``(resamples, c)``."""
    differences = _columns(differences)
    check_resamples(resamples), check_seed(seed)
    n = differences.shape[0]
    rng = np.random.default_rng(seed)
    sums = np.empty((resamples, differences.shape[1]))
    for start, rows in _blocks(resamples, n):
        picks = rng.integers(0, n, size=(rows, n))
        # How often each example is drawn in each resample: a mean is then one row of counts times d, over n.
        counts = np.bincount((picks + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n)
        counts = counts.reshape(rows, n).astype(np.float64)
        # One matrix-vector product per column: a column's means do not depend on which other columns are
        # computed with it (a matrix-matrix product may round differently with another number of columns).
        for index, column in enumerate(differences.T):
            sums[start:start + rows, index] = counts @ column
    return sums / n


def bootstrap_intervals(differences: Any, resamples: int = RESAMPLES, seed: int = SEED,
                        confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval (low, high) of each column's mean; the columns are resampled a group at a time
    (the same index sets for each group), so at most :data:`_HELD_MEANS` means are held."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    differences = _columns(differences)
    check_resamples(resamples)
    group = max(1, _HELD_MEANS // resamples)
    low, high = np.empty(differences.shape[1]), np.empty(differences.shape[1])
    for start in range(0, differences.shape[1], group):
        means = bootstrap_means(differences[:, start:start + group], resamples, seed)
        low[start:start + group], high[start:start + group] = np.quantile(
            means, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return low, high


def _without_ties(differences: np.ndarray) -> np.ndarray:
    return np.where(np.abs(differences) > TIE_TOLERANCE, differences, 0.0)


def _slack(differences: np.ndarray) -> np.ndarray:
    """How far below the observed |Σ d| a pattern's |Σ s·d| still counts as at least as extreme: far above the
    rounding of a sum taken in another order, far below any real difference (conservative either way)."""
    return 1e-9 * np.abs(differences).sum(axis=0)


def pattern_sums(values: np.ndarray) -> np.ndarray:
    """``Σ s_i·values_i`` for every one of the ``2^len(values)`` sign patterns ``s``."""
    sums = np.zeros(1)
    for value in values:  # doubling with each value
        sums = np.concatenate([sums + value, sums - value])
    return sums


def exact_sign_flip_p(differences: Sequence[float]) -> float:
    """Two-sided p of the sign-flip test over all ``2^k`` sign patterns of the ``k`` non-tied ``differences``
    (``k`` ≤ :data:`EXACT_UP_TO`), counted without listing them: the patterns' sums are ``a + b``, ``a`` a sum
    of the first half's ``2^(k/2)`` patterns and ``b`` of the second's, and for each ``a`` the sorted ``b``
    tell how many make ``|a + b|`` at least the observed ``|Σ d|`` (meet in the middle)."""
    values = _without_ties(np.asarray(differences, dtype=np.float64).ravel())
    values = values[values != 0]
    if len(values) > EXACT_UP_TO:
        raise ValueError(f"{len(values)} differing examples: more than {EXACT_UP_TO} to enumerate; use "
                         "random_sign_flip_p")
    threshold = abs(values.sum()) - _slack(values)
    if threshold <= 0:  # nothing observed: every pattern is at least as extreme
        return 1.0
    half = len(values) // 2
    first, second = pattern_sums(values[:half]), np.sort(pattern_sums(values[half:]))
    at_least = len(second) - np.searchsorted(second, threshold - first, side="left")  # a + b ≥ threshold
    at_most = np.searchsorted(second, -threshold - first, side="right")  # a + b ≤ −threshold
    return float((at_least.sum() + at_most.sum()) / (len(first) * len(second)))


def random_sign_flip_p(differences: Any, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Two-sided p of each column of ``differences`` (``n`` × ``c``) by approximate randomisation: the same
    ``resamples`` random sign patterns over the ``n`` examples for every column, ``(#extreme + 1)/(resamples + 1)``."""
    differences = _without_ties(_columns(differences))
    check_resamples(resamples), check_seed(seed)
    n = differences.shape[0]
    observed = np.abs(differences.sum(axis=0)) - _slack(differences)
    extreme = np.zeros(differences.shape[1], dtype=np.int64)
    rng = np.random.default_rng(seed)
    for _, rows in _blocks(resamples, n):
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(rows, n), dtype=np.int8)
        for index, column in enumerate(differences.T):  # one product per column, as in bootstrap_means
            extreme[index] += np.count_nonzero(np.abs(signs @ column) >= observed[index])
    return (extreme + 1) / (resamples + 1)


def sign_flip_p(differences: Any, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[np.ndarray, list[str]]:
    """Two-sided p of the sign-flip test for each column of ``differences`` (``n`` × ``c``), and how it was
    computed: ``"exact"`` when at most :data:`EXACT_UP_TO` examples of the column differ, else
    ``"approximate"`` (``resamples`` random patterns, ``seed``)."""
    differences = _without_ties(_columns(differences))
    differing = np.count_nonzero(differences, axis=0)
    p = np.ones(differences.shape[1])
    tests = ["exact" if count <= EXACT_UP_TO else "approximate" for count in differing]
    for index in np.flatnonzero(differing <= EXACT_UP_TO):
        p[index] = exact_sign_flip_p(differences[:, index])
    approximate = np.flatnonzero(differing > EXACT_UP_TO)
    if len(approximate):
        p[approximate] = random_sign_flip_p(differences[:, approximate], resamples, seed)
    return p, tests


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: the ``i``-th smallest of ``m`` p-values times ``m − i + 1``, made
    non-decreasing in that order, at most 1. Controls the chance of any false "better" among the ``m``."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    return adjusted


def win_tie_loss(first: Sequence[float], second: Sequence[float]) -> tuple[int, int, int]:
    """Examples where ``second`` is higher, equal within :data:`TIE_TOLERANCE`, lower."""
    delta = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    wins, losses = int((delta > TIE_TOLERANCE).sum()), int((delta < -TIE_TOLERANCE).sum())
    return wins, len(delta) - wins - losses, losses


def paired_differences(scores: Mapping[str, Mapping[str, Sequence[float]]], pairs: Sequence[tuple[str, str]],
                       metrics: Sequence[str], *, resamples: int = RESAMPLES, seed: int = SEED,
                       confidence: float = CONFIDENCE) -> list[PairedDifference]:
    """For each ``(first, second)`` in ``pairs`` and each metric: ``second − first`` with its interval, its
    sign-flip p (raw, and Holm-adjusted over the pairs of that metric), win/tie/loss counts and verdict.
    ``scores[system][metric]`` holds per-example values in one example order."""
    check_resamples(resamples), check_seed(seed)
    columns = [(first, second, metric) for first, second in pairs for metric in metrics]
    if not columns:
        return []
    arrays = {(system, metric): np.asarray(scores[system][metric], dtype=np.float64)
              for first, second, metric in columns for system in (first, second)}
    lengths = {len(values) for values in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"per-example values of different lengths: {sorted(lengths)}")
    differences = np.stack([arrays[second, metric] - arrays[first, metric] for first, second, metric in columns],
                           axis=1)
    low, high = bootstrap_intervals(differences, resamples, seed, confidence)
    p, tests = sign_flip_p(differences, resamples, seed)
    adjusted = np.empty_like(p)
    for metric in metrics:  # one family per metric: its pairs
        family = [index for index, column in enumerate(columns) if column[2] == metric]
        adjusted[family] = holm(p[family])
    results = []
    for index, (first, second, metric) in enumerate(columns):
        a, b = arrays[first, metric], arrays[second, metric]
        wins, ties, losses = win_tie_loss(a, b)
        results.append(PairedDifference(
            first, second, metric, len(a), float(a.mean()), float(b.mean()), float(differences[:, index].mean()),
            float(low[index]), float(high[index]), p_value=float(p[index]), p_adjusted=float(adjusted[index]),
            test=tests[index], wins=wins, ties=ties, losses=losses, confidence=confidence))
    return results


def compare_pair(first: Sequence[float], second: Sequence[float], *, metric: str = "score",
                 names: tuple[str, str] = ("first", "second"), resamples: int = RESAMPLES, seed: int = SEED,
                 confidence: float = CONFIDENCE) -> PairedDifference:
    """``second − first`` for two arrays of per-example values of one metric."""
    scores = {names[0]: {metric: first}, names[1]: {metric: second}}
    return paired_differences(scores, [names], [metric], resamples=resamples, seed=seed, confidence=confidence)[0]


def per_example_points(report: ScoreReport) -> dict[str, np.ndarray]:
    """The per-example values of a :class:`ScoreReport` on 0–100, by report key, with ``official`` (the
    per-example mean of its three parts, whose mean is the official score) when all three were computed."""
    points = {key: 100 * np.asarray(report.values[key], dtype=np.float64)
              for key in NAMES if key in report.values}
    if all(part in points for part in OFFICIAL_PARTS):
        points["official"] = sum(points[part] for part in OFFICIAL_PARTS) / len(OFFICIAL_PARTS)
    return points


@dataclass
class Comparison:
    """Several systems scored on the same references, and every pair compared."""

    ids: list[str]
    references: list[str]
    systems: dict[str, list[str]]  # name → summaries, in the order of ``ids``
    scores: dict[str, dict[str, np.ndarray]]  # name → metric → per-example points (0–100)
    pairs: list[PairedDifference]
    resamples: int = RESAMPLES
    seed: int = SEED
    confidence: float = CONFIDENCE
    skipped: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def metrics(self) -> list[str]:
        """The computed metrics, in report order."""
        first = next(iter(self.scores.values()))
        return [key for key in NAMES if key in first]

    @property
    def primary(self) -> str:
        """What the pictures and the most-different examples use: the official score when computed, else ROUGE-1."""
        return "official" if "official" in self.metrics else "rouge1"

    @property
    def family(self) -> int:
        """How many pairs each metric has: Holm adjusts each pair's p over them."""
        return len(self.systems) * (len(self.systems) - 1) // 2

    def mean(self, system: str, metric: str) -> float:
        return float(self.scores[system][metric].mean())

    def lengths(self, system: str | None = None) -> np.ndarray:
        """Characters per summary of ``system`` (the references' when ``None``)."""
        texts = self.references if system is None else self.systems[system]
        return np.array([len(text) for text in texts], dtype=np.int64)

    def most_different(self, count: int, metric: str | None = None) -> list[int]:
        """Indices of the ``count`` examples whose scores differ most between systems (max − min), largest
        first; ties in example order. Examples where every system scores the same are left out."""
        metric = metric or self.primary
        table = np.stack([self.scores[name][metric] for name in self.systems])
        spread = table.max(axis=0) - table.min(axis=0)
        order = sorted(range(self.n), key=lambda index: (-spread[index], index))
        return [index for index in order[:count] if spread[index] > TIE_TOLERANCE]

    def notes(self) -> list[str]:
        """Caveats for the reader: too few examples for steady intervals, pairs too few examples tell apart."""
        notes = []
        if self.n < FEW_EXAMPLES:
            notes.append(f"only {self.n} examples: the bootstrap sees few distinct resamples, so the intervals are "
                         "rough; judge real differences on the full dev set")
        if any(pair.differing and not pair.decidable for pair in self.pairs):
            alpha = 1 - self.confidence
            most = max(k for k in range(1, 64) if smallest_p(k) > alpha)
            notes.append(f"with k examples that differ the smallest two-sided p is 2/2^k, so {most} or fewer can never "
                         f"reach p ≤ {alpha:.2g}: such pairs get no verdict, whatever their interval says")
        return notes

    def settings_line(self) -> str:
        return (f"{self.n} examples; paired sign-flip test (exact up to {EXACT_UP_TO} differing examples, else "
                f"{self.resamples:,} random sign patterns) and paired-bootstrap {self.confidence:.0%} intervals "
                f"({self.resamples:,} resamples), seed {self.seed}; second − first, in points (0–100)")

    def p_label(self) -> str:
        """The p column's heading: which p the verdict uses."""
        return "p" if self.family == 1 else f"p (Holm, {self.family} pairs)"

    def reading_line(self) -> str:
        """How to read the pairs table."""
        alpha = 1 - self.confidence
        which = ("two-sided" if self.family == 1 else
                 f"two-sided, Holm-adjusted over the {self.family} pairs of each metric (compare.json has both)")
        return (f"p: {which}; a verdict of “better” when p ≤ {alpha:.2g}, else “not distinguishable”. "
                "The interval shows the size of the difference, the test decides")

    def systems_table(self) -> str:
        """Markdown: one row per system, its mean of every metric and its mean summary length."""
        head = ["system", *(LABELS[key] for key in self.metrics), "mean chars"]
        lines = [_row(head), "|" + "---|" * len(head)]
        for name in self.systems:
            lines.append(_row([name, *(f"{self.mean(name, key):.2f}" for key in self.metrics),
                               f"{self.lengths(name).mean():.0f}"]))
        lines.append(_row(["*reference*", *("" for _ in self.metrics), f"{self.lengths().mean():.0f}"]))
        return "\n".join(lines)

    def pairs_head(self) -> list[str]:
        return ["second − first", "metric", f"difference [{self.confidence:.0%} interval]", self.p_label(),
                "wins / ties / losses", "verdict"]

    def pair_cells(self, pair: PairedDifference) -> list[str]:
        return [f"{pair.second} − {pair.first}", LABELS[pair.metric], pair.interval_text(), pair.p_text(),
                f"{pair.wins} / {pair.ties} / {pair.losses}", pair.verdict]

    def pairs_table(self) -> str:
        """Markdown: one row per pair and metric — difference, interval, p (what the verdict uses), wins/ties/losses
        (wins + losses = the examples that differ), verdict."""
        head = self.pairs_head()
        return "\n".join([_row(head), "|" + "---|" * len(head), *(_row(self.pair_cells(pair)) for pair in self.pairs)])

    def to_json(self) -> dict[str, Any]:
        """Every number of the report: settings, per-system means, every pair, every example."""
        return {
            "n": self.n, "resamples": self.resamples, "seed": self.seed, "confidence": self.confidence,
            "test": {"name": "paired sign-flip (permutation) test of the mean difference, two-sided",
                     "exact_up_to": EXACT_UP_TO, "random_patterns": self.resamples, "adjustment": "holm",
                     "family": "the pairs of one metric", "pairs_per_metric": self.family,
                     "alpha": 1 - self.confidence},
            "metrics": self.metrics, "primary_metric": self.primary, "skipped": dict(self.skipped),
            "models": dict(self.models),
            "systems": [{"name": name, "scores": {key: self.mean(name, key) for key in self.metrics},
                         "mean_chars": float(self.lengths(name).mean())} for name in self.systems],
            "reference_mean_chars": float(self.lengths().mean()),
            "pairs": [pair.to_json() for pair in self.pairs],
            "per_example": [
                {"id": example_id, "reference_chars": len(self.references[index]),
                 "systems": {name: {"chars": len(self.systems[name][index]),
                                    **{key: float(self.scores[name][key][index]) for key in self.metrics}}
                             for name in self.systems}}
                for index, example_id in enumerate(self.ids)],
        }


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def compare_systems(references: Sequence[str], systems: Mapping[str, Sequence[str]], *,
                    ids: Sequence[str] | None = None, metrics: Sequence[str] = ("rouge1",),
                    resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE,
                    progress: Callable[[str], None] = lambda message: None, **score_options: Any) -> Comparison:
    """Score every system's summaries against ``references`` (aligned lists) with
    :func:`eval.metrics.score_pairs` (``metrics`` and ``score_options`` as there: ``bertscore_model``,
    ``bleurt_model``, ``required`` …), then compare every pair, ``second − first`` in the given order.

    >>> comparison = compare_systems(refs, {"SFT": sft, "DPO": dpo})   # doctest: +SKIP
    >>> print(comparison.pairs_table())                                 # doctest: +SKIP
    """
    if len(systems) < 2:
        raise ValueError(f"need at least two systems to compare, got {len(systems)}")
    check_resamples(resamples), check_seed(seed)
    scores: dict[str, dict[str, np.ndarray]] = {}
    reports: list[ScoreReport] = []
    for name, summaries in systems.items():
        progress(f"{name}: scoring {len(summaries)} summaries")
        reports.append(score_pairs(list(summaries), list(references), metrics, ids=ids, **score_options))
        scores[name] = per_example_points(reports[-1])
    report = reports[0]  # every system is scored with the same metrics and models
    computed = [key for key in NAMES if key in scores[next(iter(systems))]]
    pairs = paired_differences(scores, list(combinations(systems, 2)), computed, resamples=resamples, seed=seed,
                               confidence=confidence)
    return Comparison(list(report.ids), list(references), {name: list(texts) for name, texts in systems.items()},
                      scores, pairs, resamples, seed, confidence, dict(report.skipped), dict(report.models))
