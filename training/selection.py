"""Choose a run's checkpoint by the task's own score on dev, not by dev loss (`tools select-checkpoint`).

For every checkpoint of a training run (``RUN/checkpoint-N`` and the final output in ``RUN`` itself; full
weights or LoRA adapters), generate dev summaries with the same engine and options as `tools infer`, score
them with the task metric, and record one row per checkpoint: step, epoch, dev loss (from the
checkpoint's ``trainer_state.json``), every metric computed, mean summary length and the predictions file.
The best row wins — ties go to the earliest step — and ``RUN/best`` points to it. Every other row is
compared with the winner over the dev examples (:mod:`eval.compare.statistics`): the difference with its 95 %
paired-bootstrap interval, and the paired sign-flip test's p, Holm-adjusted over the rows compared; a row
the test does not tell apart from the winner (adjusted p > 0.05, or too few examples differ for any
verdict) is *within noise* of it, and the table says so — on a small dev set the choice is then as good as
a coin toss between them.

Resumable: predictions live in ``RUN/selection/<checkpoint>.dev.json`` (generated with `tools infer`'s
sidecar, so an interrupted checkpoint resumes) together with what produced them (the checkpoint's
fingerprint, the decoding and prompt options, the dev file's content hash); a rerun reuses every file
whose record still matches and generates only what is missing or stale.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from common.checkpoint_files import ADAPTER_WEIGHTS, SAFETENSORS, has_weights
from common.errors import UserError
from common.files import clear_leftovers, leftover_name
from common.io import write_json, write_text
from dataset_builders.nikl import Example
from eval.compare.statistics import RESAMPLES, SEED
from eval.registry import DEFAULT_METRIC, LABELS, NAMES, metric_name
from generation.pipeline import Decoding, Inference, InferenceOptions, side_files

SELECTION_DIR = "selection"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class RunCheckpoint:
    """One checkpoint of the training run: a ``checkpoint-N`` folder or the final output."""

    name: str  # "checkpoint-120" or "final"
    path: Path
    step: int | None
    epoch: float | None = None
    eval_loss: float | None = None


@dataclass
class Row:
    name: str
    path: str
    step: int | None
    epoch: float | None
    eval_loss: float | None
    metrics: dict[str, float | None]
    mean_summary_chars: float
    predictions: str
    vs_best: dict[str, Any] | None = None  # this row − the winner (PairedDifference.to_json), None for it
    generated: bool = field(default=False, compare=False)  # this run generated them (vs reused)


def training_state(path: Path) -> tuple[int | None, float | None, float | None]:
    """Step, epoch and dev loss at that step, from a checkpoint's ``trainer_state.json`` (Nones if absent)."""
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        return None, None, None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{state_file}: not valid JSON") from None
    if not isinstance(state, dict):
        raise UserError(f"{state_file}: a JSON {type(state).__name__}, not the object the Trainer writes; "
                        "restore it from the training run or delete it (step and dev loss are then not shown)")
    step, epoch, history = state.get("global_step"), state.get("epoch"), state.get("log_history", [])
    for key, value, kinds in (("global_step", step, int), ("epoch", epoch, (int, float)), ("log_history", history, list)):
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise UserError(f"{state_file}: '{key}' is a JSON {type(value).__name__}; restore the file from the "
                            "training run or delete it (step and dev loss are then not shown)")
    losses = [entry["eval_loss"] for entry in history
              if isinstance(entry, dict) and entry.get("step") == step and isinstance(entry.get("eval_loss"), (int, float))]
    return step, epoch, losses[-1] if losses else None


def find_checkpoints(run: Path) -> list[RunCheckpoint]:
    """``checkpoint-N`` folders in step order, then the final output (``RUN`` itself) when it holds weights."""
    if not run.is_dir():
        raise UserError(f"--run {run}: no such directory")
    found = []
    for path in run.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match and has_weights(path):
            step, epoch, loss = training_state(path)
            found.append(RunCheckpoint(path.name, path, step if step is not None else int(match.group(1)), epoch, loss))
    found.sort(key=lambda checkpoint: checkpoint.step)
    if has_weights(run):
        last = found[-1] if found else None
        found.append(RunCheckpoint("final", run, last.step if last else None, last.epoch if last else None, None))
    if not found:
        raise UserError(f"--run {run}: no checkpoint-N folder and no final weights ({ADAPTER_WEIGHTS[0]}, "
                        f"{SAFETENSORS} …) — is this an Axolotl output_dir?")
    return found


def selection_outputs(run: Path) -> dict[str, Path]:
    """Every file `tools select-checkpoint` may write for ``run``, by what it is (to refuse one that is an input)."""
    outputs = {"the selection table": run / "selection.json", "the selection table (markdown)": run / "selection.md",
               "the selection plot": run / "selection.png", "the best-checkpoint link": run / "best"}
    for checkpoint in find_checkpoints(run):
        predictions = run / SELECTION_DIR / f"{checkpoint.name}.dev.json"
        outputs[f"the predictions of {checkpoint.name}"] = predictions
        outputs[f"the record of {checkpoint.name}"] = predictions.with_name(f"{checkpoint.name}.dev.record.json")
        outputs.update({f"{what} for {checkpoint.name}": path for what, path in side_files(predictions).items()})
    return outputs


@dataclass
class DevPredictions:
    path: Path  # RUN/selection/<checkpoint>.dev.json
    texts: list[str]  # the summaries, in the dev file's order
    generated: bool  # by this run (else reused from an earlier one)


def predictions_for(checkpoint: RunCheckpoint, run: Path, examples: Sequence[Example], decoding: Decoding,
                    options: InferenceOptions, *, progress: bool, notify: Callable[[str], None],
                    restart: bool = False) -> DevPredictions:
    """The dev predictions of one checkpoint: reused when their record — what they depend on
    (:meth:`generation.pipeline.Inference.record`) — matches (then read back and checked, as they may have been
    edited; never with ``restart``, which also discards an interrupted run's sidecar), else generated — and taken
    from the run, not read back from the file it wrote."""
    folder = run / SELECTION_DIR
    output, record_file = folder / f"{checkpoint.name}.dev.json", folder / f"{checkpoint.name}.dev.record.json"
    inference = Inference.resolve(checkpoint.path, decoding, options)  # once: the record and the run share it
    record = json.loads(json.dumps(inference.record(examples)))
    if output.is_file() and record_file.is_file() and not restart:
        try:
            if json.loads(record_file.read_text(encoding="utf-8")) == record:
                return DevPredictions(output, read_predictions(output, examples), generated=False)
        except ValueError:
            pass  # a torn record: generate again
    notify(f"{checkpoint.name}: generating {len(examples)} dev summaries")
    report = inference.write(examples, output, restart=restart, progress=progress, notify=notify)
    write_json(record_file, record)
    return DevPredictions(output, [report.results[example.id]["output"] for example in examples], generated=True)


def read_predictions(path: Path, examples: Sequence[Example]) -> list[str]:
    """The summaries of a kept predictions file, in the dev file's order (ids checked against it)."""
    from dataset_builders.nikl import load_nikl
    from eval.metrics import align_by_id

    predicted = load_nikl(path)
    return align_by_id([(e.id, e.output) for e in predicted], [(e.id, e.output) for e in examples], str(path),
                       "--input")[1]


def score_predictions(texts: Sequence[str], examples: Sequence[Example], metric: str,
                      score_options: dict[str, Any]) -> tuple[dict[str, float | None], float, Any]:
    """Every metric computed (ROUGE always: it needs no weights; and ``metric``, whose model must load), the
    mean summary length, and the per-example values of ``metric`` (0–100, for the comparison with the winner)."""
    from eval.compare.statistics import per_example_points
    from eval.metrics import score_pairs

    report = score_pairs(texts, [example.output for example in examples], (DEFAULT_METRIC, metric),
                         ids=[example.id for example in examples], required=(metric,), **score_options)
    return ({key: report.score(key) for key in NAMES}, statistics.fmean(len(text) for text in texts),
            per_example_points(report)[metric])


def winner(rows: Sequence[Row], metric: str) -> Row:
    """The highest ``metric``; ties go to the earliest step (the final output after the checkpoints)."""
    order = {id(row): index for index, row in enumerate(rows)}
    return max(rows, key=lambda row: (row.metrics[metric], -order[id(row)]))


def point_best(run: Path, best: Row) -> Path:
    """``RUN/best`` → the winner: a relative symlink, replaced atomically; where links are not possible, a
    small text file naming the winner's folder."""
    link = run / "best"
    target = os.path.relpath(best.path, run)
    if link.exists() and not link.is_symlink() and link.is_dir():
        raise UserError(f"{link} is a directory; move it away so it can point to the selected checkpoint")
    clear_leftovers(link, ("tmp",))
    tmp = leftover_name(link, "tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        write_text(link, target + "\n")
    return link


def compare_with_best(rows: Sequence[Row], best: Row, values: dict[str, Any], metric: str, *, resamples: int,
                      seed: int) -> None:
    """Set each row's ``vs_best``: its per-example ``values`` minus the winner's — interval, sign-flip p (Holm over
    the rows compared) and verdict (:func:`eval.compare.statistics.paired_differences`)."""
    from eval.compare.statistics import paired_differences

    others = [row for row in rows if row is not best]
    scores = {row.name: {metric: values[row.name]} for row in rows}
    pairs = paired_differences(scores, [(best.name, row.name) for row in others], [metric], resamples=resamples,
                               seed=seed)
    for row, pair in zip(others, pairs):
        row.vs_best = pair.to_json()


@dataclass
class Selection:
    metric: str
    rows: list[Row]
    best: Row
    resamples: int = 0
    seed: int = 0

    @property
    def within_noise(self) -> list[Row]:
        """The other rows the test does not tell apart from the winner."""
        return [row for row in self.rows if row.vs_best is not None and not row.vs_best["distinguishable"]]

    def noise_line(self) -> str:
        """One sentence: is the choice more than noise?"""
        label = LABELS[self.metric]
        compared = [row.vs_best for row in self.rows if row.vs_best is not None]
        if not compared:
            return f"{self.best.name} is the only checkpoint."
        adjusted = f", Holm-adjusted over the {len(compared)} compared" if len(compared) > 1 else ""
        how = (f"paired sign-flip test over {compared[0]['n']} dev dialogues{adjusted}, beyond noise when p ≤ "
               f"{1 - compared[0]['confidence']:.2g}; {self.resamples:,} resamples, seed {self.seed}")
        tied = self.within_noise
        if not tied:
            return f"{self.best.name} is best by {label}; every other checkpoint is worse beyond noise ({how})."
        names = ", ".join(row.name for row in tied)
        return (f"{self.best.name} is best by {label}, but the choice is within noise: {names} "
                f"{'is' if len(tied) == 1 else 'are'} not distinguishable from it ({how}); ties go to the "
                "earliest step.")

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best.name, "best_path": self.best.path,
                "resamples": self.resamples, "seed": self.seed,
                "within_noise": [row.name for row in self.within_noise],
                "rows": [{key: value for key, value in asdict(row).items() if key != "generated"} for row in self.rows]}

    def markdown(self) -> str:
        """``selection.md``: the table, then whether the choice is within noise."""
        return f"{self.table()}\n\n{self.noise_line()}\n"

    def table(self) -> str:
        """A markdown table: one row per checkpoint, the winner in bold."""
        keys = [key for key in NAMES if any(row.metrics.get(key) is not None for row in self.rows)]
        compared = sum(row.vs_best is not None for row in self.rows)
        head = ["checkpoint", "step", "epoch", "dev loss", *(LABELS[key] for key in keys),
                f"Δ {LABELS[self.metric]} vs best [95 % interval]", "p" if compared < 2 else f"p (Holm, {compared})",
                "mean chars", "predictions"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def number(value: float | None, digits: int = 2) -> str:
            return "—" if value is None else f"{value:.{digits}f}"

        def difference_cells(pair: dict[str, Any] | None) -> tuple[str, str]:
            if pair is None:
                return "—", "—"
            differing = pair["differing"]
            few = "" if pair["decidable"] or not differing else f": only {differing} differ{'s' * (differing == 1)}"
            noise = "" if pair["distinguishable"] else f" (within noise{few})"
            p = "< 0.001" if pair["p_adjusted"] < 0.001 else f"{pair['p_adjusted']:.3f}"
            return f"{pair['difference']:+.2f} [{pair['low']:+.2f}, {pair['high']:+.2f}]{noise}", p

        for row in self.rows:
            name = f"**{row.name}** (best {self.metric})" if row is self.best else row.name
            cells = [name, "—" if row.step is None else str(row.step), number(row.epoch), number(row.eval_loss, 4),
                     *(number(row.metrics.get(key)) for key in keys), *difference_cells(row.vs_best),
                     f"{row.mean_summary_chars:.0f}", row.predictions]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def select_checkpoint(run: Path | str, examples: Sequence[Example], decoding: Decoding,
                      options: InferenceOptions = InferenceOptions(), *, metric: str = DEFAULT_METRIC,
                      score_options: dict[str, Any] | None = None, progress: bool = True,
                      notify: Callable[[str], None] = lambda message: None, resamples: int = RESAMPLES,
                      seed: int = SEED, restart: bool = False) -> Selection:
    """Generate (or reuse) and score dev predictions for every checkpoint of ``run``, compare each with the
    winner (sign-flip test and bootstrap interval: ``resamples``, ``seed``); write ``RUN/selection.json``,
    ``RUN/selection.md``, ``RUN/selection.png`` and ``RUN/best``. ``restart``: generate every checkpoint's
    predictions again, reusing nothing."""
    from eval.compare.statistics import check_resamples, check_seed
    from eval.metrics import load_models
    from training.selection_plot import selection_plot

    check_resamples(resamples), check_seed(seed)  # before any generation
    metric = metric_name(metric)
    run = Path(run)
    checkpoints = find_checkpoints(run)
    load_models((DEFAULT_METRIC, metric), **(score_options or {}))  # missing weights: before any generation
    rows, values = [], {}
    for checkpoint in checkpoints:
        predictions = predictions_for(checkpoint, run, examples, decoding, options, progress=progress, notify=notify,
                                      restart=restart)
        scores, mean_chars, values[checkpoint.name] = score_predictions(predictions.texts, examples, metric,
                                                                        score_options or {})
        rows.append(Row(checkpoint.name, str(checkpoint.path), checkpoint.step, checkpoint.epoch, checkpoint.eval_loss,
                        scores, mean_chars, os.path.relpath(predictions.path, run), generated=predictions.generated))
        notify(f"{checkpoint.name}: {metric} {scores[metric]:.2f}"
               + ("" if predictions.generated else " (predictions reused)"))
    best = winner(rows, metric)
    compare_with_best(rows, best, values, metric, resamples=resamples, seed=seed)
    selection = Selection(metric, rows, best, resamples, seed)
    write_json(run / "selection.json", selection.to_json())
    write_text(run / "selection.md", selection.markdown())
    within = selection.within_noise
    intervals = [None if row.vs_best is None else (row.vs_best["low"], row.vs_best["high"], row in within)
                 for row in rows]
    selection_plot(metric, [(row.step, row.metrics[metric], row.eval_loss) for row in rows], rows.index(best),
                   best.name, run / "selection.png", intervals)
    point_best(run, selection.best)
    return selection
