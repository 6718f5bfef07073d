"""`tools build-tiny-model`: a tiny random EXAONE 3.x checkpoint for CPU tests and the demo (:mod:`exaone.tiny`)."""

from __future__ import annotations

import click

from exaone.layout import LAYOUTS
from exaone.tiny import HIDDEN_SIZES, MAX_LAYERS, SHAPES, build_tiny_exaone, hidden_size_problem
from tools.options import SEED_RANGE, input_option, library_default, output_dir_option


def valid_hidden_size(value: int) -> int:
    if problem := hidden_size_problem(value):
        raise click.BadParameter(problem)
    return value


@click.command("build-tiny-model")
@output_dir_option("Directory to write the checkpoint and tokenizer to (an earlier build there is replaced; any "
                   "other non-empty folder, or one holding an --input file, is refused).")
@click.option("--layout", type=click.Choice(LAYOUTS), default="llama", show_default=True,
              help="exaone: EXAONE 3.x's own hub layout, as a download from the hub (convert it with "
                   "`tools convert-exaone`); llama: that checkpoint already converted, with the EXAONE-layout "
                   "original kept in OUTPUT_DIR-exaone-layout.")
@click.option("--shape", type=click.Choice(list(SHAPES)), default=library_default(build_tiny_exaone, "shape"),
              show_default=True,
              help="3.0: EXAONE-3.0's config (no RoPE scaling, 4096 positions); 3.5: llama3 RoPE scaling and "
                   "32k positions; tied: 3.5 with tied embeddings (no lm_head), like EXAONE-3.5-2.4B.")
@input_option("NIKL files to train the tokenizer on; repeat for several (default: the bundled sample data).",
              required=False, multiple=True)
@click.option("--hidden-size", default=library_default(build_tiny_exaone, "hidden_size"), show_default=True,
              type=click.IntRange(*HIDDEN_SIZES), callback=lambda ctx, param, value: valid_hidden_size(value),
              help="Width of the model, a multiple of 8 (4 attention heads of an even size, 2 key/value heads, MLP "
                   "twice as wide).")
@click.option("--num-layers", default=library_default(build_tiny_exaone, "num_layers"), show_default=True,
              type=click.IntRange(1, MAX_LAYERS),
              help="Number of transformer blocks.")
@click.option("--seed", default=library_default(build_tiny_exaone, "seed"), show_default=True, type=SEED_RANGE,
              help="Seed of the random weights.")
def build_tiny_model_command(output_dir, layout, shape, input_paths, hidden_size, num_layers, seed):
    """Build a tiny random EXAONE 3.x checkpoint (sharded safetensors, hub-style tokenizer) for CPU runs.

    \b
    Example:
      tools build-tiny-model --layout exaone --output-dir models/tiny-exaone
      tools convert-exaone --model models/tiny-exaone --output-dir models/tiny-exaone-llama
    """
    from exaone.tiny import build_tiny_model, exaone_layout_sibling

    options = dict(shape=shape, data_paths=input_paths or None, hidden_size=hidden_size, num_layers=num_layers,
                   seed=seed)
    if layout == "exaone":
        path = build_tiny_exaone(output_dir, **options)
        click.echo(f"wrote a tiny EXAONE {shape} checkpoint in EXAONE's hub layout to {path}")
    else:
        path = build_tiny_model(output_dir, **options)
        click.echo(f"wrote a tiny EXAONE {shape} checkpoint in the Llama layout to {path} "
                   f"(converted from {exaone_layout_sibling(output_dir)})")
