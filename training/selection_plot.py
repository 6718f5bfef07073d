"""`tools select-checkpoint`'s picture: the metric and the dev loss against the step, the chosen checkpoint starred,
each checkpoint's interval against it (within noise or beyond)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from common.plots import DPI, SIZE_INCHES, png_bytes, pyplot, write_png


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
