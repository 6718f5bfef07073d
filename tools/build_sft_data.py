"""`tools build-sft-data`: NIKL task JSON → Axolotl chat-template SFT JSONL."""

from __future__ import annotations

from pathlib import Path

import click

from tools.options import clean_option, input_option, prompt_budget_options, system_prompt_option


@click.command("build-sft-data")
@input_option
@click.option("--output", "output_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="JSONL to write (atomically), e.g. data/sft/train.jsonl.")
@system_prompt_option
@clean_option
@click.option("--tokenizer", default=None, help="Tokenizer path or hub id; needed for token statistics and truncation.")
@prompt_budget_options
@click.option("--trust-remote-code", is_flag=True, help="Allow the tokenizer's own code to run.")
def build_sft_data(input_path, output_path, system_prompt, clean_rules, tokenizer, max_prompt_tokens, trust_remote_code):
    """Convert a NIKL task file into Axolotl chat-template SFT JSONL.

    \b
    Example:
      tools build-sft-data --input 일상대화요약_train.json --output data/sft/train.jsonl
      tools build-sft-data --input 일상대화요약_train.json --output data/sft/train.jsonl \\
          --tokenizer LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct --max-prompt-tokens 2048 --clean fillers
    """
    from dataset_builders.io import write_jsonl
    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import PromptBuilder
    from dataset_builders.sft import BuildStats, sft_rows
    from dataset_builders.tokenizer import load_tokenizer

    examples = load_nikl(input_path, require_output=True)
    builder = PromptBuilder(
        system_prompt=system_prompt,
        clean_rules=clean_rules,
        tokenizer=load_tokenizer(tokenizer, trust_remote_code) if tokenizer else None,
        max_prompt_tokens=max_prompt_tokens,
    )
    stats = BuildStats()
    rows = sft_rows(examples, builder, stats)
    write_jsonl(output_path, rows)
    click.echo(f"wrote {output_path}")
    for line in stats.lines(builder):
        click.echo(line)
