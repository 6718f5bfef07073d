"""`tools score`: the task's official metric on a submission file, offline."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import UserError
from eval.registry import NAMES, OFFICIAL_PARTS, scorers_for
from tools.options import (
    MetricName,
    final_output,
    input_option,
    metric_model_options,
    metric_runtime_options,
    output_file_option,
)


@click.command("score")
@click.option("--predictions", "predictions_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Submission file in the NIKL format (`output` = the summary), e.g. result.json from `tools infer`.")
@input_option("NIKL file with the reference summaries, e.g. 일상대화요약_dev.json.")
@click.option("--metrics", type=MetricName(several=True), default=",".join(OFFICIAL_PARTS), show_default=True,
              help=f"Comma-separated metrics to compute, of: {', '.join(NAMES)} (ROUGE-2 and ROUGE-L come with "
                   "ROUGE-1; official needs its three parts).")
@output_file_option("Write the scores (0–100) and per-example values as JSON (atomically).", "--report",
                    "report_path", required=False)
@metric_model_options
@metric_runtime_options
def score(predictions_path, input_path, metrics, report_path, bertscore_model, bertscore_layers,
          bleurt_model, batch_size, device):
    """Score a submission: official = mean of ROUGE-1 F, BERTScore F1 and BLEURT-20, ×100.

    Predictions and references are matched by id. A model metric whose default weights cannot be
    loaded (offline, not cached) is skipped with the reason (official is then empty) and the rest is
    still computed; a model given with --bertscore-model/--bleurt-model that cannot be loaded is an
    error. Predictions that are all empty are an error (an unfinished run, or the test file).

    \b
    Example:
      tools score --predictions result.json --input 일상대화요약_dev.json --report report.json
      tools score --predictions result.json --input 일상대화요약_dev.json --metrics rouge1
    """
    from common.io import refuse_overwriting_inputs, refuse_writing_into, write_json
    from dataset_builders.nikl import load_nikl
    from eval.metrics import align_by_id, load_models, score_pairs

    refuse_overwriting_inputs({"--report": report_path}, {"--predictions": predictions_path, "--input": input_path})
    refuse_writing_into({"--report": report_path}, {"--bertscore-model": bertscore_model,
                                                    "--bleurt-model": bleurt_model})

    context = click.get_current_context()
    required = [scorer for scorer, option in (("bertscore", "bertscore_model"), ("bleurt", "bleurt_model"))
                if scorer in scorers_for(metrics)
                and context.get_parameter_source(option) is click.core.ParameterSource.COMMANDLINE]
    predictions = load_nikl(predictions_path)
    references = load_nikl(input_path, require_output="--input needs reference summaries to score against, e.g. "
                                                        "일상대화요약_dev.json; test files have none")
    ids, hypotheses, targets = align_by_id(
        [(example.id, example.output) for example in predictions],
        [(example.id, example.output) for example in references],
        str(predictions_path), str(input_path),
    )
    if not any(text.strip() for text in hypotheses):
        raise UserError(f"--predictions {predictions_path}: all {len(hypotheses)} predictions are empty — an "
                        "unfinished run, or the input file instead of the submission?")
    models = {"bertscore_model": bertscore_model, "bertscore_layers": bertscore_layers, "bleurt_model": bleurt_model,
              "device": device, "batch_size": batch_size}
    load_models(required, **models)  # a model named on the command line must load: checked before scoring
    report = score_pairs(hypotheses, targets, metrics, ids=ids, progress=lambda message: click.echo(message, err=True),
                         required=required, **models)
    if report_path:  # written before anything is printed: the scores are kept whatever happens to the terminal
        final_output(report_path)
        write_json(report_path, report.to_json())
    empty = sum(1 for text in hypotheses if not text.strip())
    if empty:
        click.echo(f"note: {empty} empty prediction(s), scored as they are", err=True)
    for line in report.lines():
        click.echo(line)
    if report_path:
        click.echo(f"wrote {report_path}")
