"""`tools build-tiny-model`: a tiny random EXAONE-shaped model for CPU tests and the demo."""

from __future__ import annotations

from pathlib import Path

import click

from exaone.tiny import build_tiny_model


@click.command("build-tiny-model")
@click.option("--output", "output_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the model and tokenizer to.")
@click.option("--data", "data_paths", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NIKL files to train the tokenizer on (default: the bundled sample data).")
@click.option("--hidden-size", default=64, show_default=True, type=click.IntRange(min=8))
@click.option("--num-layers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
def build_tiny_model_command(output_dir, data_paths, hidden_size, num_layers, seed):
    """Build a tiny random EXAONE-shaped model for CPU tests and the demo.

    \b
    Example:
      tools build-tiny-model --output models/tiny-exaone
    """
    path = build_tiny_model(output_dir, data_paths=data_paths or None, hidden_size=hidden_size,
                            num_layers=num_layers, seed=seed)
    click.echo(f"wrote tiny EXAONE-shaped model to {path}")
