"""`tools build-dpo-data`: sampled candidates ranked by the task metric → Axolotl DPO JSONL."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import UserError
from dataset_builders.dpo import STRATEGIES, build_dpo_rows
from common.io import KEPT_OUT_SUFFIX
from tools.options import (
    MAX_ROWS,
    FiniteFloat,
    clean_option,
    final_output,
    input_option,
    library_default,
    metric_model_options,
    metric_option,
    output_file_option,
    prompt_budget_option,
    recipe_length_options,
    system_prompt_option,
)


@click.command("build-dpo-data")
@input_option("NIKL file with reference summaries, e.g. 일상대화요약_train.json.")
@click.option("--candidates", "candidate_paths", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL {id, candidates: [...]} from `tools infer --num-candidates N`; repeat to merge files.")
@output_file_option("DPO JSONL to write (atomically), e.g. data/dpo/train.jsonl.", side_suffixes=(KEPT_OUT_SUFFIX,))
@click.option("--strategy", type=click.Choice(STRATEGIES), default=library_default(build_dpo_rows, "strategy"),
              show_default=True, help="How pairs are formed from the scored candidates.")
@metric_option("Ranking metric (0–100); bertscore, bleurt and official need their models.")
@metric_model_options
@click.option("--min-margin", type=FiniteFloat(0, 100), default=library_default(build_dpo_rows, "min_margin"),
              show_default=True,
              help="Smallest score gap (0–100 points) a pair may have.")
@click.option("--max-pairs-per-prompt", type=click.IntRange(1, MAX_ROWS),
              default=library_default(build_dpo_rows, "max_pairs_per_prompt"), show_default=True,
              help="Cap for --strategy all-pairs-margin.")
@click.option("--human", "human_path", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL {id, chosen, rejected} pairs given by people; they replace the automatic pairs of their prompt.")
@system_prompt_option
@clean_option
@click.option("--tokenizer", default=None,
              help="Tokenizer for truncation (default with --recipe: its base_model).")
@prompt_budget_option()
@recipe_length_options
def build_dpo_data(input_path, candidate_paths, output_path, strategy, metric, bertscore_model, bertscore_layers,
                   bleurt_model, min_margin, max_pairs_per_prompt, human_path, system_prompt, clean_rules, tokenizer,
                   max_prompt_tokens, recipe, max_seq_len):
    """Build DPO preference pairs from the SFT model's own samples, ranked by the task metric.

    \b
    Example:
      tools infer --ckpt outputs/exaone-sft --input 일상대화요약_train.json \\
          --num-candidates 8 --temperature 0.8 --output candidates/train.jsonl
      tools build-dpo-data --input 일상대화요약_train.json \\
          --candidates candidates/train.jsonl --output data/dpo/train.jsonl
    """
    from tqdm import tqdm

    from common.io import (
        read_jsonl,
        refuse_overwriting_inputs,
        refuse_writing_into,
        write_id_list,
        write_jsonl,
    )
    from dataset_builders.dpo import build_dpo_rows, load_candidates, parse_human_pairs
    from dataset_builders.nikl import load_nikl
    from eval.metrics import pair_scorer
    from dataset_builders.recipe import row_prompt_builder

    kept_out_file = output_path.with_name(output_path.name + KEPT_OUT_SUFFIX)
    final_output(output_path)
    refuse_overwriting_inputs({"--output": output_path, "the kept-out list": kept_out_file},
                              {"--input": input_path, "--candidates": candidate_paths, "--human": human_path,
                               "--recipe": recipe})
    examples = load_nikl(input_path, require_output=True)
    ids = {example.id for example in examples}
    candidates = load_candidates(candidate_paths, ids)
    human = parse_human_pairs(read_jsonl(human_path), str(human_path), ids) if human_path else None
    builder, max_seq_len = row_prompt_builder(system_prompt, clean_rules, tokenizer, max_prompt_tokens, recipe,
                                              max_seq_len, outputs={"--output": output_path})
    refuse_writing_into({"--output": output_path}, {"--bertscore-model": bertscore_model,
                                                    "--bleurt-model": bleurt_model})
    score_fn = pair_scorer(metric, bertscore_model=bertscore_model, bleurt_model=bleurt_model,
                           bertscore_layers=bertscore_layers)
    click.echo(f"scoring candidates with {metric} …")
    rows, stats = build_dpo_rows(
        examples, candidates, score_fn, builder, strategy=strategy, min_margin=min_margin,
        max_pairs_per_prompt=max_pairs_per_prompt, human=human,
        progress=lambda items: tqdm(items, desc="pairs", unit="prompt"), max_seq_len=max_seq_len,
    )
    if not rows:
        raise UserError(f"no preference pair survived ({'; '.join(stats.drop_lines())}); nothing written")
    listed = write_id_list(kept_out_file, stats.kept_out)
    write_jsonl(output_path, rows)  # the last write: once it is there, the command's work is done
    click.echo(f"wrote {output_path} ({strategy}, metric {metric})")
    for line in stats.lines(kept_out_file if listed else None):
        click.echo(line)
