"""`tools build-synthetic-data`: NIKL-shaped files at the real splits' sizes (:mod:`dataset_builders.synthetic`)."""

from __future__ import annotations

import click

from dataset_builders.synthetic import SIZES, describe, write_split
from tools.options import SEED_RANGE, library_default, output_dir_option


@click.command("build-synthetic-data")
@output_dir_option("Folder for 일상대화요약_{train,dev,test}.json (files of the same name there are replaced).")
@click.option("--split", "splits", multiple=True, type=click.Choice(list(SIZES)), default=tuple(SIZES),
              show_default=True, help="Split to write; repeat for several.")
@click.option("--seed", default=library_default(write_split, "seed"), show_default=True, type=SEED_RANGE,
              help="Seed of the draws (the same seed writes the same files).")
def build_synthetic_data(output_dir, splits, seed):
    """Write a full-size synthetic NIKL set: the real splits' sizes (506 / 102 / 408 dialogues), length
    distributions and quirks, with sentences written for this project — to try every command at full size
    before the licensed corpus arrives.

    \b
    Example:
      tools build-synthetic-data --output-dir data/synthetic
      tools build-synthetic-data --output-dir /tmp/s --split test --seed 3
    """
    for split in splits:
        path = write_split(output_dir, split, seed)
        click.echo(f"wrote {path}: {describe(path)}")
