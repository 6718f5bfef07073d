"""Pictures of what the tables hold, for a person who would rather look than read (matplotlib, PNG)."""

from __future__ import annotations

import io
import textwrap
import warnings
from pathlib import Path
from typing import Any, Sequence

from common.io import atomic_open

SIZE_INCHES, DPI = (8, 4.5), 100  # an 800×450 pixel image


# Fonts with Hangul, for system names in Korean; the first one installed is used (else names show as boxes —
# the tables always carry them).
KOREAN_FONTS = ("Noto Sans CJK KR", "Noto Sans KR", "NanumGothic", "Malgun Gothic", "AppleGothic", "UnDotum")


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed), with a Korean font when one is installed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    installed = {font.name for font in font_manager.fontManager.ttflist}
    korean = [name for name in KOREAN_FONTS if name in installed]
    if korean:
        plt.rcParams["font.family"] = [korean[0], "DejaVu Sans"]
    return plt


def png_bytes(figure: Any) -> bytes:
    """The figure as PNG bytes (800×450 at the default size); the figure is closed. Characters the font lacks
    are drawn as boxes without a warning per character."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=DPI)
    pyplot().close(figure)
    return buffer.getvalue()


def write_png(path: Path | str, data: bytes) -> Path:
    """Write PNG bytes atomically."""
    path = Path(path)
    with atomic_open(path) as file:  # a text handle: write the bytes through its buffer
        file.flush()
        file.buffer.write(data)
    return path


def selection_plot(metric: str, points: Sequence[tuple[int | None, float, float | None]], best: int, best_name: str,
                   path: Path | str, intervals: Sequence[tuple[float, float, bool] | None] = ()) -> Path:
    """The selection metric and the dev loss against the training step (``points``: step, score, dev loss per
    checkpoint), the chosen one (index ``best``) marked: at a glance, whether loss and score agree.
    ``intervals`` (per checkpoint, ``None`` for the chosen one): the interval of its difference to the chosen
    one, drawn around its score, and whether the test finds it within noise (blue) or worse beyond noise (red)."""
    from eval.registry import LABELS

    plt = pyplot()
    x = [step if step is not None else index for index, (step, _, _) in enumerate(points)]
    scores = [score for _, score, _ in points]
    figure, score_axis = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    score_axis.plot(x, scores, "o-", color="tab:blue", label=f"{LABELS[metric]} on dev")
    score_axis.set_xlabel("training step")
    score_axis.set_ylabel(f"{LABELS[metric]} (0–100)", color="tab:blue")
    handles = score_axis.get_lines()[:]
    for within, colour_of, label in ((True, "tab:blue", "within noise of the selected"),
                                      (False, "tab:red", "worse than the selected beyond noise")):
        bars = [(x[index], scores[index], scores[best] + low, scores[best] + high)
                for index, interval in enumerate(intervals) if interval is not None and index != best
                for low, high, noise in [interval] if noise == within]
        if bars:
            at, centre, lows, highs = (list(column) for column in zip(*bars))
            errors = [[max(0.0, c - lo) for c, lo in zip(centre, lows)],
                      [max(0.0, hi - c) for c, hi in zip(centre, highs)]]
            handles.append(score_axis.errorbar(at, centre, yerr=errors, fmt="none", ecolor=colour_of, alpha=0.5,
                                               capsize=4, label=f"95 % interval of the difference: {label}"))
    if any(interval is not None for interval in intervals):
        handles += score_axis.plot([min(x), max(x)], [scores[best]] * 2, ":", color="tab:red", alpha=0.6,
                                   label="selected score")
    losses = [(step, loss) for step, (_, _, loss) in zip(x, points) if loss is not None]
    if losses:
        loss_axis = score_axis.twinx()
        handles += loss_axis.plot(*zip(*losses), "s--", color="tab:orange", label="dev loss")
        loss_axis.set_ylabel("dev loss", color="tab:orange")
        score_axis.set_zorder(loss_axis.get_zorder() + 1)  # the score and the star above the loss line
        score_axis.patch.set_visible(False)
    handles += score_axis.plot([x[best]], [scores[best]], "*", markersize=18, color="tab:red", zorder=5,
                               linestyle="none", label=f"selected: {best_name}")
    score_axis.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize="small",
                      frameon=False)
    score_axis.xaxis.get_major_locator().set_params(integer=True)
    score_axis.set_title(f"Checkpoint selection by {LABELS[metric]} on dev (★ = selected)")
    score_axis.grid(alpha=0.3)
    return write_png(path, png_bytes(figure))


# ---- `tools compare` -----------------------------------------------------------------------------------

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
