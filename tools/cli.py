"""The `tools` command group. Commands import their heavy dependencies inside, so `--help` is instant."""

from __future__ import annotations

import click

from tools.build_dpo_data import build_dpo_data
from tools.build_sft_data import build_sft_data
from tools.cpu_overlay import cpu_overlay
from tools.demo import demo
from tools.infer import infer
from tools.rerank import rerank
from tools.score import score
from tools.tiny_model import build_tiny_model_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nikl-dialogue-summarization")
def cli():
    """Fine-tune Korean LLMs on NIKL 일상 대화 요약: data, inference, scoring."""


cli.add_command(build_sft_data)
cli.add_command(build_dpo_data)
cli.add_command(build_tiny_model_command)
cli.add_command(cpu_overlay)
cli.add_command(demo)
cli.add_command(infer)
cli.add_command(rerank)
cli.add_command(score)

if __name__ == "__main__":  # pragma: no cover
    cli()
