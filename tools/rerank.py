"""`tools rerank`: minimum-Bayes-risk choice among candidates → the submission file."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import UserError
from tools.options import input_option


@click.command("rerank")
@click.option("--candidates", "candidate_paths", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL {id, candidates: [...]}; repeat to ensemble several checkpoints or models (merged by id).")
@input_option
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Submission JSON to write (atomically).")
def rerank(candidate_paths, input_path, output_path):
    """Pick, per dialogue, the candidate most similar (ROUGE-1 F) to the other candidates.

    No reference is needed, so this works on the test split. Ties go to the earliest candidate,
    in the order the --candidates files are given.

    \b
    Example:
      tools rerank --candidates candidates/test_sft.jsonl --candidates candidates/test_dpo.jsonl \\
          --input 일상대화요약_test.json --output result.json
    """
    from tqdm import tqdm

    from dataset_builders.dpo import load_candidates
    from dataset_builders.io import write_json
    from dataset_builders.nikl import load_nikl
    from eval.mbr import mbr_select
    from eval.metrics import rouge1_similarity

    examples = load_nikl(input_path)
    ids = {example.id for example in examples}
    candidates = load_candidates(candidate_paths, ids)
    missing = [example.id for example in examples if not candidates.get(example.id)]
    if missing:
        shown = ", ".join(repr(example_id) for example_id in missing[:5])
        raise UserError(
            f"{len(missing)} id(s) of {input_path} have no candidates: {shown}{' …' if len(missing) > 5 else ''}"
        )
    similarity = rouge1_similarity()
    submission = []
    for example in tqdm(examples, desc="rerank", unit="dialogue"):
        texts = candidates[example.id]
        submission.append({**example.raw, "output": texts[mbr_select(texts, similarity)]})
    write_json(output_path, submission)
    click.echo(f"wrote {output_path}: {len(submission)} dialogues, "
               f"{sum(len(candidates[i]) for i in ids) / len(ids):.1f} candidates each on average")
