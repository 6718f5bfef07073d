"""`tools convert-exaone`: an EXAONE 3.x checkpoint → the native Llama layout, once (logic: :mod:`exaone.convert`)."""

from __future__ import annotations

import click

from exaone.convert import convert
from exaone.layout import LAYOUTS
from tools.options import library_default, output_dir_option


@click.command("convert-exaone")
@click.option("--model", required=True,
              help="EXAONE 3.x checkpoint: a local directory or a hub id (config, tokenizer and *.safetensors "
                   "are downloaded; the hub token comes from HF_TOKEN or `huggingface-cli login`).")
@output_dir_option("Directory to write the converted checkpoint to (built beside it, renamed at the end).")
@click.option("--revision", default=None, help="Hub commit, branch or tag to download (pin a commit hash).")
@click.option("--to", "to", type=click.Choice(LAYOUTS), default=library_default(convert, "to"), show_default=True,
              help="llama: EXAONE 3.x → Llama layout; exaone: the reverse.")
@click.option("--force", is_flag=True, help="Replace --output-dir if it exists and is not empty.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="A progress bar per shard.")
def convert_exaone(model, output_dir, revision, to, force, progress):
    """Convert an EXAONE 3.0/3.5 checkpoint to the Llama layout that transformers, Axolotl and vLLM run
    natively (no remote code). Exact: only tensor names and config keys change; weights are copied byte for
    byte, shard by shard. EXAONE 4.0 is native already and needs no conversion.

    \b
    Example:
      tools convert-exaone --model LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct \\
          --output-dir models/EXAONE-3.0-7.8B-Instruct-llama
      tools convert-exaone --model models/EXAONE-3.0-7.8B-Instruct-llama --to exaone --output-dir models/roundtrip
    """
    done = convert(model, output_dir, to=to, revision=revision, force=force, progress=progress)
    size = f"{done.size_bytes / 1e9:.2f} GB" if done.size_bytes >= 1e8 else f"{done.size_bytes / 1e6:.1f} MB"
    click.echo(f"wrote {done.output}: {done.tensors} tensors in {done.shards} shard(s), {size}, {done.layout} layout")
