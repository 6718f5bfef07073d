"""`tools select-checkpoint`: pick a run's checkpoint by the task's score on dev (:mod:`workflow.selection`)."""

from __future__ import annotations

from pathlib import Path

import click

from tools.options import generation_options, inference_options, metric_model_options, quiet_loading
from workflow.selection import SELECTION_METRICS


@click.command("select-checkpoint")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A training run's output_dir: its checkpoint-N folders and final weights are compared.")
@click.option("--dev", "dev_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NIKL file with reference summaries, e.g. 일상대화요약_dev.json.")
@click.option("--metric", type=click.Choice(SELECTION_METRICS), default="rouge1",
              show_default=True, help="What selects: rouge1 needs no weights; the others need their local models.")
@metric_model_options
@generation_options
@click.option("--restart", is_flag=True,
              help="Generate every checkpoint's predictions again: reuse none, discard interrupted runs' sidecars.")
def select_checkpoint(run_dir, dev_path, metric, bertscore_model, bertscore_layers, bleurt_model, max_new_tokens,
                      threads, progress, restart, **options):
    """Generate dev summaries with every checkpoint of a run, score them, and point RUN/best at the winner.

    Writes RUN/selection.json (per checkpoint: step, epoch, dev loss, every metric, mean summary length,
    predictions file), RUN/selection.md (the table, printed too) and RUN/selection.png (metric and dev
    loss against the step). The best score wins; ties go to the earliest step (the final output counts
    after the checkpoints). Predictions are kept in RUN/selection/: a rerun — after an interruption, or
    once more checkpoints exist — generates only what is missing or stale (--restart: everything again).
    Generation uses the same engine and options as `tools infer`.

    \b
    Example:
      tools select-checkpoint --run outputs/exaone-lora --dev 일상대화요약_dev.json
      tools select-checkpoint --run outputs/exaone-sft --dev 일상대화요약_dev.json --metric official \\
          --bertscore-model models/bert-base-multilingual-cased --bleurt-model models/BLEURT-20
    """
    from common.devices import use_threads
    from dataset_builders.io import refuse_overwriting_inputs
    from dataset_builders.nikl import load_nikl
    from generation.decoding import Decoding
    from workflow.selection import select_checkpoint as select
    from workflow.selection import selection_outputs

    refuse_overwriting_inputs(selection_outputs(run_dir), {"--dev": dev_path})
    examples = load_nikl(dev_path, require_output="--dev needs reference summaries to score checkpoints against")
    use_threads(threads)
    quiet_loading(progress)
    score_options = {"bertscore_model": bertscore_model, "bertscore_layers": bertscore_layers,
                     "bleurt_model": bleurt_model, "device": None if options["device"] == "auto" else options["device"]}
    selection = select(run_dir, examples, Decoding(max_new_tokens=max_new_tokens), inference_options(**options),
                       metric=metric, score_options=score_options, progress=progress,
                       notify=lambda message: click.echo(message, err=True), restart=restart)
    click.echo(selection.table())
    click.echo(f"best by {metric}: {selection.best.name} → {run_dir / 'best'}; wrote {run_dir / 'selection.json'}, "
               f"{run_dir / 'selection.md'}, {run_dir / 'selection.png'}")
