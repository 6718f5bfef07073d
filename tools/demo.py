"""`tools demo`: the pipeline on CPU with the bundled sample data (grown stage by stage)."""

from __future__ import annotations

from pathlib import Path

import click

from tools.tiny_model import SAMPLE_DATA


@click.command("demo")
@click.option("--workdir", default="demo_out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where every stage writes its outputs.")
@click.pass_context
def demo(ctx, workdir):
    """Run the pipeline on CPU with the bundled sample data and a tiny model.

    \b
    Example:
      make demo            # or: tools demo --workdir demo_out
    """
    from tools.build_sft_data import build_sft_data

    for split in ("train", "dev"):
        click.echo(f"== build-sft-data ({split})")
        ctx.invoke(
            build_sft_data,
            input_path=SAMPLE_DATA / f"일상대화요약_{split}.json",
            output_path=workdir / "data" / "sft" / f"{split}.jsonl",
            system_prompt="exaone",
            clean_rules=(),
            tokenizer=None,
            max_prompt_tokens=None,
            trust_remote_code=False,
        )
