"""`tools build-learnable-task`: a summarisation task a tiny model masters on CPU, as NIKL task files
(:mod:`dataset_builders.learnable`)."""

from __future__ import annotations

import click

from dataset_builders.learnable import DEFAULT_SIZES, SPLIT_FILE, write_task
from tools.options import SEED_RANGE, library_default, output_dir_option


SIZE = click.IntRange(2, 100_000)  # 100,000 train dialogues: ~117 MB, 6 s


@click.command("build-learnable-task")
@output_dir_option(f"Folder to write {SPLIT_FILE.format(split='{train,dev,test}')} to (files there are replaced).")
@click.option("--seed", default=library_default(write_task, "seed"), show_default=True, type=SEED_RANGE,
              help="The same seed writes the same files.")
@click.option("--train", "train_size", default=DEFAULT_SIZES["train"], show_default=True, type=SIZE,
              help="Training dialogues.")
@click.option("--dev", "dev_size", default=DEFAULT_SIZES["dev"], show_default=True, type=SIZE,
              help="Dev dialogues (with reference summaries).")
@click.option("--test", "test_size", default=DEFAULT_SIZES["test"], show_default=True, type=SIZE,
              help='Test dialogues ("output": "", as in the real test file).')
def build_learnable_task(output_dir, seed, train_size, dev_size, test_size):
    """Write a dialogue-summarisation task in the NIKL schema that a tiny model can learn on a CPU.

    Korean dialogues from templates and the sample data's vocabulary; each reference summary names the
    two speakers, the subject keywords and the one detail a speaker states (day, place, what they did), so
    only a model that reads the dialogue can write it. Dev and test use speaker pairs and (topic, place)
    combinations that never occur in train. `make demo` trains on it; docs/demo.md describes it.

    \b
    Example:
      tools build-learnable-task --output-dir data/learnable
      tools build-sft-data --input data/learnable/일상대화요약_train.json --output data/sft/train.jsonl
    """
    paths = write_task(output_dir, seed, {"train": train_size, "dev": dev_size, "test": test_size})
    click.echo(f"wrote {', '.join(str(path) for path in paths)} (seed {seed})")
