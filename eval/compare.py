"""Is a difference between two systems real? Paired bootstrap over the examples both were scored on.

Every system is scored on the same examples, so what matters is the per-example difference
``d_i = second_i − first_i`` (0–100 points, one metric). For each pair of systems:

* **difference** — the mean of ``d`` (= the difference of the two corpus scores);
* **interval** — the paired percentile bootstrap: ``resamples`` times, draw ``n`` example indices with
  replacement (``numpy.random.default_rng(seed).integers(0, n, (resamples, n))``) and take the mean of ``d``
  over them; the interval is the ``(1 − confidence)/2`` and ``(1 + confidence)/2`` quantiles of those
  means (numpy's default linear interpolation). Every pair and every metric is resampled with the same
  index sets, so the numbers of one report agree with each other;
* **p** — two-sided, from the same resamples: twice the share of resampled means on the *other side of
  0* from the observed difference (a mean of exactly 0 counts on both sides), with the usual +1 so that a
  finite number of resamples never claims p = 0: ``p = min(1, 2·(k + 1)/(resamples + 1))``, ``k`` =
  the smaller of #(means ≤ 0) and #(means ≥ 0). It is the p-value that goes with the interval: p < 1 −
  confidence when the interval excludes 0, up to the granularity of the resampling;
* **wins / ties / losses** — examples where the second system scores higher / the same (within 1e-9) /
  lower;
* **verdict** — "not distinguishable" when the interval contains 0, else which system is better.

Identical inputs give ``d = 0`` everywhere, hence a difference, interval and every resampled mean of
exactly 0, p = 1 and "not distinguishable"; a constant shift ``c`` gives exactly ``c`` for all three
when ``c`` and its multiples are exact in floating point. On a few examples (the demo has 4) the
bootstrap sees only a handful of distinct resamples: its interval is then rough, and the report says so.

:func:`compare_systems` scores several systems with :func:`eval.metrics.score_pairs` (no metric is
re-implemented here) and compares every pair; :func:`paired_bootstrap` compares two arrays of
per-example values. Both are plain Python/numpy, usable from a notebook.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from eval.metrics import ScoreReport, score_pairs
from eval.registry import LABELS, NAMES, OFFICIAL_PARTS

RESAMPLES = 10_000
SEED = 0
CONFIDENCE = 0.95
TIE_TOLERANCE = 1e-9  # points: per-example scores closer than this are a tie
FEW_EXAMPLES = 30  # below this many examples the report warns that the intervals are rough
_CHUNK = 1024  # resamples turned into draw counts at a time


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
    p_value: float
    wins: int  # examples where ``second`` scores higher
    ties: int
    losses: int
    confidence: float = CONFIDENCE

    @property
    def distinguishable(self) -> bool:
        return not self.low <= 0.0 <= self.high

    @property
    def verdict(self) -> str:
        if not self.distinguishable:
            return "not distinguishable"
        return f"{self.second if self.low > 0 else self.first} better"

    def p_text(self) -> str:
        return "< 0.001" if self.p_value < 0.001 else f"{self.p_value:.3f}"

    def interval_text(self, digits: int = 2) -> str:
        return f"{self.difference:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def bootstrap_means(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Means of each column of ``differences`` (``n`` examples × ``k`` columns) over ``resamples`` sets of
    ``n`` examples drawn with replacement — the same sets for every column: shape ``(resamples, k)``."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim == 1:
        differences = differences[:, None]
    n = differences.shape[0]
    if n == 0:
        raise ValueError("nothing to resample: no examples")
    if resamples < 1:
        raise ValueError(f"resamples must be ≥ 1, got {resamples}")
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # 8·resamples·n bytes
    sums = np.empty((resamples, differences.shape[1]))
    for start in range(0, resamples, _CHUNK):  # a block of resamples at a time: bounded extra memory
        block = picks[start:start + _CHUNK]
        rows = len(block)
        # How often each example is drawn in each resample: a mean is then one row of counts times d, over n.
        counts = np.bincount((block + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n)
        counts = counts.reshape(rows, n).astype(np.float64)
        # One matrix-vector product per column: a column's means do not depend on which other columns are
        # computed with it (a matrix-matrix product may round differently with another number of columns).
        for index, column in enumerate(differences.T):
            sums[start:start + rows, index] = counts @ column
    return sums / n


def interval_and_p(means: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The percentile interval (low, high) and the two-sided p of each column of resampled means."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    below, above = (means <= 0).sum(axis=0), (means >= 0).sum(axis=0)
    p = np.minimum(1.0, 2 * (np.minimum(below, above) + 1) / (means.shape[0] + 1))
    return low, high, p


def win_tie_loss(first: Sequence[float], second: Sequence[float]) -> tuple[int, int, int]:
    """Examples where ``second`` is higher, equal within :data:`TIE_TOLERANCE`, lower."""
    delta = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    wins, losses = int((delta > TIE_TOLERANCE).sum()), int((delta < -TIE_TOLERANCE).sum())
    return wins, len(delta) - wins - losses, losses


def paired_differences(scores: Mapping[str, Mapping[str, Sequence[float]]], pairs: Sequence[tuple[str, str]],
                       metrics: Sequence[str], *, resamples: int = RESAMPLES, seed: int = SEED,
                       confidence: float = CONFIDENCE) -> list[PairedDifference]:
    """For each ``(first, second)`` in ``pairs`` and each metric: ``second − first`` with its interval,
    p and win/tie/loss counts. ``scores[system][metric]`` holds per-example values in one example order."""
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
    low, high, p = interval_and_p(bootstrap_means(differences, resamples, seed), confidence)
    results = []
    for index, (first, second, metric) in enumerate(columns):
        a, b = arrays[first, metric], arrays[second, metric]
        results.append(PairedDifference(
            first, second, metric, len(a), float(a.mean()), float(b.mean()), float(differences[:, index].mean()),
            float(low[index]), float(high[index]), float(p[index]), *win_tie_loss(a, b), confidence=confidence))
    return results


def paired_bootstrap(first: Sequence[float], second: Sequence[float], *, metric: str = "score",
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

    def caveat(self) -> str | None:
        if self.n < FEW_EXAMPLES:
            return (f"only {self.n} examples: the bootstrap sees few distinct resamples, so the intervals are rough; "
                    "judge real differences on the full dev set")
        return None

    def settings_line(self) -> str:
        return (f"{self.n} examples; paired bootstrap, {self.resamples:,} resamples, seed {self.seed}; "
                f"{self.confidence:.0%} intervals of second − first, in points (0–100)")

    def systems_table(self) -> str:
        """Markdown: one row per system, its mean of every metric and its mean summary length."""
        head = ["system", *(LABELS[key] for key in self.metrics), "mean chars"]
        lines = [_row(head), "|" + "---|" * len(head)]
        for name in self.systems:
            lines.append(_row([name, *(f"{self.mean(name, key):.2f}" for key in self.metrics),
                               f"{self.lengths(name).mean():.0f}"]))
        lines.append(_row(["*reference*", *("" for _ in self.metrics), f"{self.lengths().mean():.0f}"]))
        return "\n".join(lines)

    def pairs_table(self) -> str:
        """Markdown: one row per pair and metric — difference, interval, p, wins/ties/losses, verdict."""
        head = ["second − first", "metric", f"difference [{self.confidence:.0%} interval]", "p",
                "wins / ties / losses", "verdict"]
        lines = [_row(head), "|" + "---|" * len(head)]
        for pair in self.pairs:
            lines.append(_row([f"{pair.second} − {pair.first}", LABELS[pair.metric], pair.interval_text(),
                               pair.p_text(), f"{pair.wins} / {pair.ties} / {pair.losses}", pair.verdict]))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Every number of the report: settings, per-system means, every pair, every example."""
        return {
            "n": self.n, "resamples": self.resamples, "seed": self.seed, "confidence": self.confidence,
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
