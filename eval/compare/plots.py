"""`tools compare`'s pictures: score distributions per system, per-example differences per pair, summary vs
reference length, score vs relative length (PNG bytes for the report folder and its HTML page)."""

from __future__ import annotations

import textwrap
from typing import Any

from common.plots import DPI, SIZE_INCHES, png_bytes, pyplot


COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<")  # systems that coincide stay visible


def colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def score_distributions(comparison: Any, metric: str) -> bytes:
    """Per system: the per-example scores as points over a box plot, the mean as a diamond."""
    from eval.registry import LABELS

    plt = pyplot()
    names = list(comparison.systems)
    figure, axis = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    values = [comparison.scores[name][metric] for name in names]
    axis.boxplot(values, orientation="horizontal", widths=0.5, showfliers=False, medianprops={"color": "black"})
    jitter = _jitter(comparison.n)
    for index, (name, points) in enumerate(zip(names, values), 1):
        axis.scatter(points, index + jitter, s=12, alpha=0.6, color=colour(index - 1))
        axis.plot([points.mean()], [index], "D", color="black", markersize=7)
    axis.set_yticks(range(1, len(names) + 1), names)
    axis.invert_yaxis()
    axis.set_xlabel(f"{LABELS[metric]} per example (0–100); ◆ = mean")
    axis.set_title(f"Score distributions on {comparison.n} examples")
    axis.grid(axis="x", alpha=0.3)
    return png_bytes(figure)


def pair_differences(comparison: Any, metric: str) -> bytes:
    """Per pair: every example's difference (points), the mean (diamond) and its interval (thick bar), coloured
    by the test's verdict (green: the second better, red: the first, blue: not distinguishable)."""
    from eval.registry import LABELS

    plt = pyplot()
    pairs = [pair for pair in comparison.pairs if pair.metric == metric]
    figure, axis = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    jitter = _jitter(comparison.n)
    for index, pair in enumerate(pairs):
        delta = comparison.scores[pair.second][metric] - comparison.scores[pair.first][metric]
        axis.scatter(delta, index + 2.5 * jitter, s=12, alpha=0.4, color="tab:gray", zorder=2)
        colour_of = "tab:blue" if not pair.distinguishable else "tab:green" if pair.difference > 0 else "tab:red"
        axis.plot([pair.low, pair.high], [index, index], "-", linewidth=9, alpha=0.8, color=colour_of,
                  solid_capstyle="butt", zorder=3)
        axis.plot([pair.difference], [index], "D", color="black", markersize=5, zorder=4)
    axis.axvline(0, color="black", linewidth=1)
    axis.set_yticks(range(len(pairs)), [f"{pair.second} − {pair.first}\n" + "\n".join(textwrap.wrap(pair.verdict, 32))
                                        for pair in pairs])
    axis.invert_yaxis()
    axis.set_xlabel(f"{LABELS[metric]} difference per example (points); bar = {comparison.confidence:.0%} interval "
                    "of the mean ◆")
    axis.set_title("Per-example differences (colour: the test's verdict)")
    axis.grid(axis="x", alpha=0.3)
    return png_bytes(figure)


def summary_lengths(comparison: Any) -> bytes:
    """Summary length against reference length, one colour per system, the diagonal = the same length."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    reference = comparison.lengths()
    largest = 1
    for index, name in enumerate(comparison.systems):
        lengths = comparison.lengths(name)
        largest = max(largest, int(lengths.max()), int(reference.max()))
        axis.scatter(reference, lengths, s=24, alpha=0.6, edgecolors=colour(index), marker=marker(index), facecolors="none",
                     label=f"{name} (mean {lengths.mean():.0f})")
    axis.plot([0, largest], [0, largest], ":", color="black", label="as long as the reference")
    axis.set_xlabel(f"reference length (characters; mean {reference.mean():.0f})")
    axis.set_ylabel("summary length (characters)")
    axis.set_title("Summary length vs reference length")
    axis.legend(fontsize="small", loc="best")
    axis.grid(alpha=0.3)
    return png_bytes(figure)


def score_by_length(comparison: Any, metric: str) -> bytes:
    """The score against the summary's length relative to its reference: where a system is too long or short."""
    from eval.registry import LABELS

    plt = pyplot()
    figure, axis = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    reference = comparison.lengths().clip(min=1)
    for index, name in enumerate(comparison.systems):
        axis.scatter(comparison.lengths(name) / reference, comparison.scores[name][metric], s=24, alpha=0.6,
                     edgecolors=colour(index), marker=marker(index), facecolors="none", label=name)
    axis.axvline(1, color="black", linestyle=":", linewidth=1)
    axis.set_xlabel("summary length ÷ reference length (1 = as long)")
    axis.set_ylabel(f"{LABELS[metric]} (0–100)")
    axis.set_title("Score vs length")
    axis.legend(fontsize="small", loc="best")
    axis.grid(alpha=0.3)
    return png_bytes(figure)


def _jitter(n: int):
    """Small fixed vertical offsets so that equal points stay visible (the same picture on every run)."""
    import numpy as np

    return np.random.default_rng(0).uniform(-0.15, 0.15, n)
