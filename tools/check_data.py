"""`tools check-data`: tokenise training rows as Axolotl will for a recipe and check them against inference
(:mod:`training.check_data`)."""

from __future__ import annotations

from pathlib import Path

import click

from tools.options import system_prompt_option


@click.command("check-data")
@click.option("--recipe", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The Axolotl recipe that will train on the rows (SFT or DPO).")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL rows: `tools build-sft-data` or `tools build-dpo-data` output (or your own).")
@click.option("--tokenizer", default=None,
              help="Model directory or hub id whose tokenizer to use  [default: the recipe's base_model]")
@system_prompt_option
def check_data(recipe, input_path, tokenizer, system_prompt):
    """Check, before training, that the loss is on the summary and that training sees inference's prompt.

    Tokenises every row the way Axolotl will for RECIPE — with Axolotl's own config loader, tokenizer
    loader and dataset strategy (DPO: its preference transform, then TRL's tokenisation) — and checks:
    1. the trained tokens are exactly the summary plus [|endofturn|], nothing of the system or user turn
    (DPO: chosen and rejected each end with it); 2. the prompt `tools infer` builds for the row's dialogue
    (same --system-prompt) equals the training row's prefix, token for token; 3. no row is cut or dropped
    at the recipe's sequence_len. Prints one row with its trained tokens between ⟦ ⟧ and one line per
    check; exits 1 naming the first row and check that fail.

    \b
    Example:
      tools check-data --recipe recipes/exaone_lora.yml --input data/sft/train.jsonl
      tools check-data --recipe recipes/exaone_dpo.yml --input data/dpo/train.jsonl \\
          --tokenizer models/EXAONE-3.0-7.8B-Instruct-llama
    """
    from common.errors import UserError
    from training.check_data import check_rows

    checked = check_rows(recipe, input_path, tokenizer=tokenizer, system_prompt=system_prompt)
    click.echo(f"{len(checked.rows)} {checked.kind} rows of {input_path}, tokenised as Axolotl does for {recipe} "
               f"({checked.settings}; tokenizer {tokenizer or 'the recipe base_model'}, "
               f"system prompt {system_prompt!r} as in `tools infer`)")
    example = checked.example()
    click.echo(f"{example.where}, trained tokens between ⟦ ⟧:")
    click.echo("    " + example.shown.replace("\n", "\n    "))
    for line in checked.summary_lines():
        click.echo(line)
    if not checked.passed:
        raise UserError(checked.error())
