"""`tools rerank`: minimum-Bayes-risk choice among candidates → the submission file."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import UserError
from tools.options import check_output_kind, final_output, input_option, output_file_option


def shown(ids: list[str], limit: int = 5) -> str:
    return ", ".join(repr(example_id) for example_id in ids[:limit]) + (" …" if len(ids) > limit else "")


@click.command("rerank")
@click.option("--candidates", "candidate_paths", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL {id, candidates: [...]}; repeat to ensemble several checkpoints or models (merged by id).")
@input_option("NIKL task file the candidates were sampled for, e.g. 일상대화요약_test.json.")
@output_file_option("Submission JSON to write (atomically).")
@click.option("--fallback", "fallback_path", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A submission (e.g. greedy `tools infer` output) whose summary is used for a dialogue none of "
                   "whose candidates is usable; without it such dialogues are an error.")
def rerank(candidate_paths, input_path, output_path, fallback_path):
    """Pick, per dialogue, the candidate most similar (ROUGE-1 F) to the other candidates.

    No reference is needed, so this works on the test split. Empty and degenerate candidates
    (repetition loops) are set aside first, with the same filter as build-dpo-data, so they can neither be
    submitted nor win by agreeing with themselves. Ties go to the earliest candidate, in the order the
    --candidates files are given.

    \b
    Example:
      tools rerank --candidates candidates/test_sft.jsonl --candidates candidates/test_dpo.jsonl \\
          --input 일상대화요약_test.json --output result.json
    """
    from tqdm import tqdm

    from common.io import refuse_overwriting_inputs, write_json
    from dataset_builders.candidates import unusable_reason
    from dataset_builders.dpo import load_candidates
    from dataset_builders.nikl import load_nikl
    from eval.mbr import mbr_select
    from eval.metrics import rouge1_similarity

    check_output_kind(output_path, candidates=False, submission_only=True)
    final_output(output_path)
    refuse_overwriting_inputs({"--output": output_path}, {"--input": input_path, "--candidates": candidate_paths,
                                                          "--fallback": fallback_path})
    examples = load_nikl(input_path)
    ids = {example.id for example in examples}
    candidates = load_candidates(candidate_paths, ids)
    missing = [example.id for example in examples if not candidates.get(example.id)]
    if missing:
        raise UserError(f"{len(missing)} id(s) of {input_path} have no candidates: {shown(missing)}")
    usable = {key: [text for text in texts if unusable_reason(text) is None] for key, texts in candidates.items()}
    unusable = [example.id for example in examples if not usable[example.id]]
    fallback = {}
    if unusable:
        if fallback_path is None:
            raise UserError(f"{len(unusable)} dialogue(s) have only empty or degenerate candidates: {shown(unusable)}; "
                            "sample more, or pass --fallback SUBMISSION.json to take their summaries from it")
        fallback = {example.id: example.output for example in load_nikl(fallback_path)}
        lacking = [key for key in unusable if unusable_reason(fallback.get(key, "")) is not None]
        if lacking:
            raise UserError(f"--fallback {fallback_path} has no usable summary either for: {shown(lacking)}")
    similarity = rouge1_similarity()
    submission = []
    for example in tqdm(examples, desc="rerank", unit="dialogue"):
        texts = usable[example.id]
        output = texts[mbr_select(texts, similarity)] if texts else fallback[example.id]
        submission.append({**example.raw, "output": output})
    write_json(output_path, submission)
    set_aside = sum(len(candidates[i]) - len(usable[i]) for i in ids)
    click.echo(f"wrote {output_path}: {len(submission)} dialogues, "
               f"{sum(len(candidates[i]) for i in ids) / len(ids):.1f} candidates each on average, "
               f"{set_aside} empty or degenerate set aside"
               + (f"; {len(unusable)} taken from {fallback_path}: {shown(unusable)}" if unusable else ""))
