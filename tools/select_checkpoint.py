"""`tools select-checkpoint`: pick a run's checkpoint by the task's score on dev (:mod:`training.selection`)."""

from __future__ import annotations

from pathlib import Path

import click

from tools.options import (
    generation_options,
    input_option,
    metric_model_options,
    metric_option,
    quiet_loading,
    resampling_options,
)


@click.command("select-checkpoint")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A training run's output_dir: its checkpoint-N folders and final weights are compared.")
@input_option("NIKL file with reference summaries to score the checkpoints on, e.g. 일상대화요약_dev.json.")
@metric_option("What selects: rouge1 needs no weights; bertscore, bleurt and official need their models.")
@metric_model_options
@resampling_options
@generation_options
@click.option("--restart", is_flag=True,
              help="Generate every checkpoint's predictions again: reuse none, discard interrupted runs' sidecars.")
def select_checkpoint(run_dir, input_path, metric, bertscore_model, bertscore_layers, bleurt_model, resamples, seed,
                      max_new_tokens, threads, progress, restart, **options):
    """Generate dev summaries with every checkpoint of a run, score them, and point RUN/best at the winner.

    Writes RUN/selection.json (per checkpoint: step, epoch, dev loss, every metric, mean summary length,
    predictions file, the difference to the winner with its paired-bootstrap 95 % interval and the
    paired sign-flip test's p, Holm-adjusted over the checkpoints), RUN/selection.md (the table,
    printed too, and whether the choice is within noise: not told apart by the test) and
    RUN/selection.png (metric and dev loss against the step, each checkpoint's interval against the
    winner). The best score wins; ties go to the earliest step (the final output counts after the
    checkpoints). Predictions are kept in RUN/selection/: a rerun — after an interruption, or
    once more checkpoints exist — generates only what is missing or stale (--restart: everything again).
    Generation uses the same engine and options as `tools infer`.

    \b
    Example:
      tools select-checkpoint --run outputs/exaone-lora --input 일상대화요약_dev.json
      tools select-checkpoint --run outputs/exaone-sft --input 일상대화요약_dev.json --metric official \\
          --bertscore-model models/bert-base-multilingual-cased --bleurt-model models/BLEURT-20
    """
    from common.devices import use_threads
    from common.io import refuse_overwriting_inputs
    from dataset_builders.nikl import load_nikl
    from generation.pipeline import Decoding, InferenceOptions
    from training.selection import select_checkpoint as select
    from training.selection import selection_outputs

    refuse_overwriting_inputs(selection_outputs(run_dir), {"--input": input_path})
    examples = load_nikl(input_path, require_output="--input needs reference summaries to score checkpoints against")
    use_threads(threads)
    quiet_loading(progress)
    score_options = {"bertscore_model": bertscore_model, "bertscore_layers": bertscore_layers,
                     "bleurt_model": bleurt_model, "device": None if options["device"] == "auto" else options["device"]}
    inference = InferenceOptions(**options)
    selection = select(run_dir, examples, Decoding(max_new_tokens=max_new_tokens), inference, metric=metric,
                       score_options=score_options, progress=progress,
                       notify=lambda message: click.echo(message, err=True), resamples=resamples, seed=seed,
                       restart=restart)
    click.echo(selection.markdown(), nl=False)
    click.echo(f"best by {metric}: {selection.best.name} → {run_dir / 'best'}; wrote {run_dir / 'selection.json'}, "
               f"{run_dir / 'selection.md'}, {run_dir / 'selection.png'}")
