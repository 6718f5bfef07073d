"""`tools cpu-overlay`: derive the CPU smoke-run config of a GPU recipe (logic: :mod:`training.cpu_overlay`)."""

from __future__ import annotations

from pathlib import Path

import click

from dataset_builders.recipe import load_recipe
from tools.options import MAX_STEPS, final_output, output_file_option
from training.cpu_overlay import describe_overrides, overlay_config, parse_overrides, write_config


@click.command("cpu-overlay")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--base-model", required=True, help="Model dir (e.g. the tiny model) or hub id to train.")
@click.option("--train-data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL replacing the recipe's training data (SFT rows or DPO pairs, as the recipe expects).")
@click.option("--eval-data", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSONL replacing the recipe's dev set; without it evaluation is turned off.")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Axolotl output_dir (the prepared dataset goes to OUTPUT_DIR/prepared unless --prepared-dir).")
@click.option("--prepared-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="dataset_prepared_path for `axolotl preprocess`.")
@click.option("--max-steps", default=2, show_default=True, type=click.IntRange(1, MAX_STEPS),
              help="Training steps; a checkpoint is saved (and dev loss computed) at the last one.")
@click.option("--save-every", type=click.IntRange(1, MAX_STEPS), default=None,
              help="Also save a checkpoint (and compute dev loss) every N steps, e.g. for "
                   "`tools select-checkpoint`  [default: only at --max-steps]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Give a key of the recipe another value (read as YAML), e.g. --set learning_rate=2e-3; repeat "
                   "for several. Only keys the recipe sets; each is named in the derived config's header.")
@output_file_option("Where to write the derived YAML.", "--config-out", "config_out")
def cpu_overlay(recipe, base_model, train_data, eval_data, output_dir, prepared_dir, max_steps, save_every,
                overrides, config_out):
    """Derive a CPU config from a GPU recipe: same recipe, GPU-only keys switched off, tiny paths.

    \b
    Example:
      tools cpu-overlay recipes/exaone_lora.yml --base-model models/tiny-exaone \\
          --train-data data/sft/train.jsonl --eval-data data/sft/dev.jsonl \\
          --output-dir outputs/exaone-lora-cpu --max-steps 2 --config-out configs/exaone_lora.cpu.yml
      tools cpu-overlay recipes/exaone_sft.yml … --set learning_rate=2e-3 --set micro_batch_size=16
      axolotl preprocess configs/exaone_lora.cpu.yml
      axolotl train configs/exaone_lora.cpu.yml --launcher python
    """
    from common.io import refuse_overlapping_folders, refuse_overwriting_inputs, refuse_writing_into
    from common.paths import MAKES_BASE_MODEL, require_local

    refuse_overwriting_inputs({"--config-out": config_out}, {"recipe": recipe, "--train-data": train_data,
                                                             "--eval-data": eval_data})
    refuse_writing_into({"--config-out": config_out}, {"--base-model": base_model})
    refuse_overlapping_folders({"--output-dir": output_dir, "--prepared-dir": prepared_dir},
                               {"--base-model": base_model})
    final_output(config_out)
    require_local(base_model, "--base-model", MAKES_BASE_MODEL + ", `tools build-tiny-model` a tiny one")
    changes = parse_overrides(overrides)
    cfg = overlay_config(recipe, base_model=base_model, train_data=train_data, eval_data=eval_data,
                         output_dir=output_dir, max_steps=max_steps, prepared_dir=prepared_dir, save_every=save_every,
                         overrides=changes)
    write_config(cfg, config_out, recipe=recipe, overrides=changes)
    click.echo(f"wrote {config_out} (from {recipe}: CPU overlay, max_steps {max_steps}"
               + (f"; overrides: {describe_overrides(changes, load_recipe(recipe))}" if changes else "") + ")")
