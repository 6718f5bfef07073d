"""`tools infer`: batched, resumable generation → the submission JSON (or sampled candidates JSONL).

The engine lives in :mod:`generation`; this is only the command line.
"""

from __future__ import annotations


import click

from generation.decoding import Decoding
from generation.sidecar import LOCK_SUFFIX, SIDECAR_SUFFIX
from tools.options import (
    MAX_ROWS,
    SEED_RANGE,
    FiniteFloat,
    apply_threads,
    check_output_kind,
    final_output,
    generation_options,
    input_option,
    library_default,
    output_file_option,
    quiet_loading,
)


@click.command("infer")
@click.option("--ckpt", required=True,
              help="Full checkpoint dir, LoRA adapter dir (Axolotl/PEFT output) or hub id.")
@input_option("NIKL task file to summarise (JSON list), e.g. 일상대화요약_test.json.")
@output_file_option("Submission JSON to write (atomically); with --num-candidates a JSONL of candidates.",
                    side_suffixes=(SIDECAR_SUFFIX, LOCK_SUFFIX))
@generation_options
@click.option("--num-candidates", type=click.IntRange(1, MAX_ROWS), default=None,
              help="Sample N summaries per dialogue and write JSONL {id, candidates} instead of a submission.")
@click.option("--temperature", type=FiniteFloat(0, 100, min_open=True), default=None,
              help="Sampling temperature (with --num-candidates)  "
                   f"[default: {library_default(Decoding, 'temperature')}]")
@click.option("--top-p", type=FiniteFloat(0, 1), default=None,
              help=f"Nucleus sampling mass (with --num-candidates)  [default: {library_default(Decoding, 'top_p')}]")
@click.option("--seed", type=SEED_RANGE, default=None,
              help="Sampling seed (with --num-candidates); each dialogue's candidates depend only on it and "
                   f"the dialogue id  [default: {library_default(Decoding, 'seed')}]")
@click.option("--restart", is_flag=True, help="Discard the results sidecar of an earlier run instead of resuming.")
def infer(ckpt, input_path, output_path, num_candidates, temperature, top_p, seed, restart, max_new_tokens,
          threads, progress, **options):
    """Generate summaries for a NIKL file: the leaderboard submission JSON, or sampled candidates.

    Results are appended to OUTPUT.partial.jsonl as they finish; re-running the same command after a
    crash resumes where it stopped (a run on other settings, or on a checkpoint whose files changed, is
    refused). The sidecar is removed once OUTPUT is written; a second run on the same OUTPUT stops at once.

    \b
    Examples:
      tools infer --ckpt outputs/exaone-lora --input 일상대화요약_test.json --output result.json
      tools infer --ckpt outputs/exaone-lora/merged --input 일상대화요약_train.json \\
          --output candidates/train.jsonl --num-candidates 8 --temperature 0.8 --top-p 0.95 --seed 0
    """
    from common.io import refuse_overwriting_inputs
    from dataset_builders.nikl import load_nikl
    from generation.pipeline import Inference, InferenceOptions, side_files

    sampling_flags = {"--temperature": temperature, "--top-p": top_p, "--seed": seed}
    if num_candidates is None and any(value is not None for value in sampling_flags.values()):
        given = [name for name, value in sampling_flags.items() if value is not None]
        verb = "apply" if len(given) > 1 else "applies"
        raise click.UsageError(f"{', '.join(given)} {verb} only with --num-candidates (the default decoding is greedy)")
    check_output_kind(output_path, candidates=num_candidates is not None)
    final_output(output_path)
    refuse_overwriting_inputs({"--output": output_path, **side_files(output_path)}, {"--input": input_path})
    sampling = {key: value for key, value in (("temperature", temperature), ("top_p", top_p), ("seed", seed))
                if value is not None}  # the rest: Decoding's defaults
    decoding = Decoding(max_new_tokens=max_new_tokens, num_candidates=num_candidates, **sampling)
    examples = load_nikl(input_path)
    apply_threads(threads)
    quiet_loading(progress)
    inference = Inference.resolve(ckpt, decoding, InferenceOptions(**options))
    report = inference.write(examples, output_path, restart=restart, progress=progress,
                             notify=lambda message: click.echo(message, err=True))
    click.echo(f"wrote {output_path}")
    for line in report.summary():
        click.echo(line)

