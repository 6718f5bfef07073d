"""Pictures of what the tables hold, for a person who would rather look than read (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from common.io import atomic_open
from eval.registry import LABELS

SIZE_INCHES, DPI = (8, 4.5), 100  # an 800×450 pixel image


def selection_plot(metric: str, points: Sequence[tuple[int | None, float, float | None]], best: int, best_name: str,
                   path: Path | str) -> Path:
    """The selection metric and the dev loss against the training step (``points``: step, score, dev loss per
    checkpoint), the chosen one (index ``best``) marked: at a glance, whether loss and score agree."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    x = [step if step is not None else index for index, (step, _, _) in enumerate(points)]
    scores = [score for _, score, _ in points]
    figure, score_axis = plt.subplots(figsize=SIZE_INCHES, dpi=DPI)
    score_axis.plot(x, scores, "o-", color="tab:blue", label=f"{LABELS[metric]} on dev")
    score_axis.set_xlabel("training step")
    score_axis.set_ylabel(f"{LABELS[metric]} (0–100)", color="tab:blue")
    handles = score_axis.get_lines()[:]
    losses = [(step, loss) for step, (_, _, loss) in zip(x, points) if loss is not None]
    if losses:
        loss_axis = score_axis.twinx()
        handles += loss_axis.plot(*zip(*losses), "s--", color="tab:orange", label="dev loss")
        loss_axis.set_ylabel("dev loss", color="tab:orange")
        score_axis.set_zorder(loss_axis.get_zorder() + 1)  # the score and the star above the loss line
        score_axis.patch.set_visible(False)
    handles += score_axis.plot([x[best]], [scores[best]], "*", markersize=18, color="tab:red", zorder=5,
                               linestyle="none", label=f"selected: {best_name}")
    score_axis.legend(handles=handles, loc="best", fontsize="small")
    score_axis.set_title(f"Checkpoint selection by {LABELS[metric]} on dev (★ = selected)")
    score_axis.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    with atomic_open(path) as file:  # a text handle: write the PNG bytes through its buffer
        figure.savefig(file.buffer, format="png", dpi=DPI)
    plt.close(figure)
    return path
