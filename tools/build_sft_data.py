"""`tools build-sft-data`: NIKL task JSON → Axolotl chat-template SFT JSONL."""

from __future__ import annotations

import click

from common.io import KEPT_OUT_SUFFIX
from tools.options import (
    clean_option,
    final_output,
    input_option,
    output_file_option,
    prompt_budget_option,
    recipe_length_options,
    system_prompt_option,
)


@click.command("build-sft-data")
@input_option()
@output_file_option("JSONL to write (atomically), e.g. data/sft/train.jsonl.", side_suffixes=(KEPT_OUT_SUFFIX,))
@system_prompt_option
@clean_option
@click.option("--tokenizer", default=None,
              help="Tokenizer path or hub id; needed for token statistics and truncation (default with --recipe: "
                   "its base_model).")
@prompt_budget_option()
@recipe_length_options
@click.option("--trust-remote-code", is_flag=True, help="Allow the tokenizer's own code to run.")
def build_sft_data(input_path, output_path, system_prompt, clean_rules, tokenizer, max_prompt_tokens, recipe,
                   max_seq_len, trust_remote_code):
    """Convert a NIKL task file into Axolotl chat-template SFT JSONL.

    With --recipe (or --max-seq-len and --tokenizer) every row fits the recipe's sequence_len — prompt,
    summary and template tokens, counted as Axolotl counts them — by dropping utterances from the middle
    of long conversations (never the [Question] line). Axolotl would drop longer rows silently; a row
    that cannot keep even the first word of its dialogue beside its summary is kept out, counted and
    listed in OUTPUT.kept-out.txt.

    \b
    Example:
      tools build-sft-data --input 일상대화요약_train.json --output data/sft/train.jsonl \\
          --recipe recipes/exaone_lora.yml
      tools build-sft-data --input 일상대화요약_train.json --output data/sft/train.jsonl \\
          --tokenizer models/EXAONE-3.0-7.8B-Instruct-llama --max-seq-len 4096 --clean fillers
    """
    from common.errors import UserError
    from common.io import refuse_overwriting_inputs, write_id_list, write_jsonl
    from dataset_builders.nikl import load_nikl
    from dataset_builders.sft import BuildStats, sft_rows
    from dataset_builders.recipe import row_prompt_builder

    kept_out_file = output_path.with_name(output_path.name + KEPT_OUT_SUFFIX)
    outputs = {"--output": output_path, "the kept-out list": kept_out_file}
    final_output(output_path)
    refuse_overwriting_inputs(outputs, {"--input": input_path, "--recipe": recipe})
    examples = load_nikl(input_path, require_output=True)
    builder, max_seq_len = row_prompt_builder(system_prompt, clean_rules, tokenizer, max_prompt_tokens, recipe,
                                              max_seq_len, trust_remote_code, outputs=outputs)
    stats = BuildStats()
    rows = sft_rows(examples, builder, stats, max_seq_len)
    if not rows:
        raise UserError(f"all {len(examples)} examples of {input_path} were kept out: not even the first word of a "
                        "dialogue fits the length limit; nothing written (raise --max-seq-len or --max-prompt-tokens)")
    listed = write_id_list(kept_out_file, stats.kept_out)
    write_jsonl(output_path, rows)  # the last write: once it is there, the command's work is done
    click.echo(f"wrote {output_path}")
    for line in stats.lines(builder, max_seq_len, kept_out_file if listed else None):
        click.echo(line)
