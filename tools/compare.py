"""`tools compare`: is the difference between systems real? A paired sign-flip test, bootstrap intervals and a report
(:mod:`eval.compare.report`)."""

from __future__ import annotations

from pathlib import Path

import click

from tools.options import (
    input_option,
    library_default,
    metric_model_options,
    metric_runtime_options,
    resampling_options,
)
from eval.compare.report import write_report


@click.command("compare")
@input_option("NIKL file with the reference summaries, e.g. 일상대화요약_dev.json.")
@click.argument("prediction_paths", nargs=-1, required=True, metavar="PREDICTIONS.json...",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--report", "report_dir", required=True, type=click.Path(dir_okay=True, path_type=Path),
              help="Folder for compare.json, compare.md, the PNGs and report.html (created; files replaced).")
@click.option("--name", "names", multiple=True,
              help="A system's name, once per predictions file in the same order  [default: the file names]")
@resampling_options
@click.option("--examples", type=click.IntRange(0, 10_000), default=library_default(write_report, "examples"),
              show_default=True,
              help="How many of the examples where the systems differ most report.html shows.")
@metric_model_options
@metric_runtime_options
def compare(input_path, prediction_paths, report_dir, names, resamples, seed, examples, bertscore_model,
            bertscore_layers, bleurt_model, batch_size, device):
    """Compare two or more submissions on the same references: is each difference more than noise?

    Every file is scored per example (ROUGE-1/2/L; BERTScore, BLEURT and the official mean too when
    --bertscore-model and --bleurt-model are given), then every pair: the mean difference (second −
    first, in the order given) with a paired-bootstrap 95 % interval, the p of a paired sign-flip test
    (exact when few examples differ; Holm-adjusted over the pairs of a metric when there are several),
    wins/ties/losses, and a verdict: "better" when p ≤ 0.05, else "not distinguishable" (with 5 or fewer
    differing examples no verdict is possible). The report folder gets compare.json (every number),
    compare.md (the tables), pictures and one self-contained report.html with the examples where the
    systems differ most.

    \b
    Example:
      tools compare --input 일상대화요약_dev.json results/dev_sft.json results/dev_dpo.json --report reports/sft-vs-dpo
      tools compare --input 일상대화요약_dev.json sft.json dpo.json mbr.json --name SFT --name DPO --name MBR \\
          --report reports/dev --bertscore-model models/bert-base-multilingual-cased --bleurt-model models/BLEURT-20
    """
    from eval.compare.report import check_report_dir, compare_files, dialogue_texts

    check_report_dir(report_dir, [input_path, *prediction_paths])
    context = click.get_current_context()
    given = [metric for metric, option in (("bertscore", "bertscore_model"), ("bleurt", "bleurt_model"))
             if context.get_parameter_source(option) is click.core.ParameterSource.COMMANDLINE]
    comparison, references, sources = compare_files(
        input_path, prediction_paths, names, metrics=("rouge1", *given), resamples=resamples, seed=seed,
        progress=lambda message: click.echo(message, err=True), required=given, bertscore_model=bertscore_model,
        bertscore_layers=bertscore_layers, bleurt_model=bleurt_model, device=device, batch_size=batch_size)
    title = f"{' vs '.join(comparison.systems)} on {input_path.name}"
    written = write_report(comparison, report_dir, title=title, sources=sources,
                           dialogues=dialogue_texts(references), examples=examples)
    click.echo(f"{comparison.settings_line()}. {comparison.reading_line()}.")
    for note in comparison.notes():
        click.echo(f"note: {note}")
    click.echo(comparison.systems_table())
    click.echo()
    click.echo(comparison.pairs_table())
    click.echo(f"wrote {len(written)} files to {report_dir}: open {report_dir / 'report.html'}")

