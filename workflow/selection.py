"""Choose a run's checkpoint by the task's own score on dev, not by dev loss (`tools select-checkpoint`).

For every checkpoint of a training run (``RUN/checkpoint-N`` and the final output in ``RUN`` itself; full
weights or LoRA adapters), generate dev summaries with the same engine and options as `tools infer`, score
them with the task metric, and record one row per checkpoint: step, epoch, dev loss (from the
checkpoint's ``trainer_state.json``), every metric computed, mean summary length and the predictions file.
The best row wins — ties go to the earliest step — and ``RUN/best`` points to it.

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

from common.errors import UserError
from dataset_builders.io import atomic_open, write_json
from dataset_builders.nikl import Example
from generation.checkpoints import resolve_checkpoint
from generation.decoding import Decoding
from generation.pipeline import InferenceOptions, infer_file
from generation.runner import examples_digest

SELECTION_DIR = "selection"
SELECTION_METRICS = ("rouge1", "bertscore", "bleurt", "official")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "model.safetensors.index.json",
            "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass
class Candidate:
    """One checkpoint of the run."""

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
    generated: bool = field(default=False, compare=False)  # this run generated them (vs reused)


def has_weights(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in _WEIGHTS)


def training_state(path: Path) -> tuple[int | None, float | None, float | None]:
    """Step, epoch and dev loss at that step, from a checkpoint's ``trainer_state.json`` (Nones if absent)."""
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        return None, None, None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{state_file}: not valid JSON") from None
    step = state.get("global_step")
    losses = [entry for entry in state.get("log_history", []) if "eval_loss" in entry and entry.get("step") == step]
    return step, state.get("epoch"), losses[-1]["eval_loss"] if losses else None


def find_checkpoints(run: Path) -> list[Candidate]:
    """``checkpoint-N`` folders in step order, then the final output (``RUN`` itself) when it holds weights."""
    if not run.is_dir():
        raise UserError(f"--run {run}: no such directory")
    found = []
    for path in run.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match and has_weights(path):
            step, epoch, loss = training_state(path)
            found.append(Candidate(path.name, path, step if step is not None else int(match.group(1)), epoch, loss))
    found.sort(key=lambda candidate: candidate.step)
    if has_weights(run):
        last = found[-1] if found else None
        found.append(Candidate("final", run, last.step if last else None, last.epoch if last else None, None))
    if not found:
        raise UserError(f"--run {run}: no checkpoint-N folder and no final weights (adapter_model.safetensors, "
                        "model.safetensors …) — is this an Axolotl output_dir?")
    return found


def metrics_to_run(metric: str) -> tuple[str, ...]:
    """What `eval.metrics.score_pairs` must compute for the chosen selection metric."""
    return {"rouge1": ("rouge",), "bertscore": ("rouge", "bertscore"), "bleurt": ("rouge", "bleurt"),
            "official": ("rouge", "bertscore", "bleurt")}[metric]


def record_of(candidate: Candidate, examples: Sequence[Example], decoding: Decoding,
              options: InferenceOptions) -> dict[str, Any]:
    """What the predictions of ``candidate`` depend on: if any of it changes, they are generated again."""
    checkpoint = resolve_checkpoint(candidate.path, options.base_model)
    settings = {key: value for key, value in asdict(options).items()
                if key not in ("batch_size", "max_batch_tokens", "device")}  # they change no output
    return {"checkpoint": checkpoint.settings(), "decoding": decoding.settings(), "options": settings,
            "input_sha256": examples_digest(examples)}


def predictions_for(candidate: Candidate, run: Path, examples: Sequence[Example], decoding: Decoding,
                    options: InferenceOptions, *, progress: bool, notify: Callable[[str], None]) -> tuple[Path, bool]:
    """The dev predictions of one checkpoint, reused when their record matches; ``(file, generated?)``."""
    folder = run / SELECTION_DIR
    output, record_file = folder / f"{candidate.name}.dev.json", folder / f"{candidate.name}.dev.record.json"
    record = json.loads(json.dumps(record_of(candidate, examples, decoding, options)))
    if output.is_file() and record_file.is_file():
        try:
            if json.loads(record_file.read_text(encoding="utf-8")) == record:
                return output, False
        except ValueError:
            pass  # a torn record: generate again
    notify(f"{candidate.name}: generating {len(examples)} dev summaries")
    infer_file(candidate.path, examples, output, decoding, options, progress=progress, notify=notify)
    write_json(record_file, record)
    return output, True


def score_candidate(candidate: Candidate, predictions: Path, examples: Sequence[Example], metric: str,
                    score_options: dict[str, Any]) -> tuple[dict[str, float | None], float]:
    from dataset_builders.nikl import load_nikl
    from eval.metrics import REPORT_KEYS, align_by_id, score_pairs

    predicted = load_nikl(predictions)
    ids, hypotheses, references = align_by_id([(e.id, e.output) for e in predicted],
                                              [(e.id, e.output) for e in examples], str(predictions), "--dev")
    needed = metrics_to_run(metric)
    report = score_pairs(hypotheses, references, needed, ids=ids, required=[m for m in needed if m != "rouge"],
                         **score_options)
    scores = {key: report.score(key) for key in REPORT_KEYS}
    return scores, statistics.fmean(len(text) for text in hypotheses)


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
    tmp = run / f".best.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        with atomic_open(link) as file:
            file.write(target + "\n")
    return link


@dataclass
class Selection:
    metric: str
    rows: list[Row]
    best: Row

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best.name, "best_path": self.best.path,
                "rows": [{key: value for key, value in asdict(row).items() if key != "generated"} for row in self.rows]}

    def table(self) -> str:
        """A markdown table: one row per checkpoint, the winner in bold."""
        from eval.metrics import LABELS

        keys = [key for key in ("rouge1", "rouge2", "rougeL", "bertscore", "bleurt", "official")
                if any(row.metrics.get(key) is not None for row in self.rows)]
        head = ["checkpoint", "step", "epoch", "dev loss", *(LABELS[key] for key in keys), "mean chars", "predictions"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

        def number(value: float | None, digits: int = 2) -> str:
            return "—" if value is None else f"{value:.{digits}f}"

        for row in self.rows:
            name = f"**{row.name}** (best {self.metric})" if row is self.best else row.name
            cells = [name, "—" if row.step is None else str(row.step), number(row.epoch), number(row.eval_loss, 4),
                     *(number(row.metrics.get(key)) for key in keys), f"{row.mean_summary_chars:.0f}",
                     row.predictions]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def select_checkpoint(run: Path | str, examples: Sequence[Example], decoding: Decoding,
                      options: InferenceOptions = InferenceOptions(), *, metric: str = "rouge1",
                      score_options: dict[str, Any] | None = None, progress: bool = True,
                      notify: Callable[[str], None] = lambda message: None) -> Selection:
    """Generate (or reuse) and score dev predictions for every checkpoint of ``run``; write
    ``RUN/selection.json``, ``RUN/selection.md``, ``RUN/selection.png`` and ``RUN/best``."""
    from workflow.plots import selection_plot

    if metric not in SELECTION_METRICS:
        raise UserError(f"--metric {metric}: choose from {', '.join(SELECTION_METRICS)}")
    run = Path(run)
    candidates = find_checkpoints(run)
    rows = []
    for candidate in candidates:
        predictions, generated = predictions_for(candidate, run, examples, decoding, options, progress=progress,
                                                 notify=notify)
        scores, mean_chars = score_candidate(candidate, predictions, examples, metric, score_options or {})
        rows.append(Row(candidate.name, str(candidate.path), candidate.step, candidate.epoch, candidate.eval_loss,
                        scores, mean_chars, os.path.relpath(predictions, run), generated))
        notify(f"{candidate.name}: {metric} {scores[metric]:.2f}" + (" (predictions reused)" if not generated else ""))
    selection = Selection(metric, rows, winner(rows, metric))
    write_json(run / "selection.json", selection.to_json())
    with atomic_open(run / "selection.md") as file:
        file.write(selection.table() + "\n")
    selection_plot(metric, [(row.step, row.metrics[metric], row.eval_loss) for row in rows], rows.index(selection.best),
                   selection.best.name, run / "selection.png")
    point_best(run, selection.best)
    return selection
