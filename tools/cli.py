"""The `tools` command group: the click layer. Commands import their heavy dependencies inside, so `--help`
is instant; library code raises :class:`common.errors.UserError`, which becomes a one-line error here."""

from __future__ import annotations

import click

from common.errors import UserError
from tools.build_dpo_data import build_dpo_data
from tools.build_sft_data import build_sft_data
from tools.build_tiny_model import build_tiny_model_command
from tools.cpu_overlay import cpu_overlay
from tools.demo import demo
from tools.infer import infer
from tools.rerank import rerank
from tools.score import score


class ToolsGroup(click.Group):
    """The one place where a :class:`UserError` becomes ``Error: <message>`` and exit code 1; any other
    exception keeps its traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=ToolsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nikl-dialogue-summarization")
def cli():
    """Fine-tune Korean LLMs on NIKL 일상 대화 요약: data, inference, scoring."""


for command in (build_sft_data, build_dpo_data, build_tiny_model_command, cpu_overlay, demo, infer, rerank, score):
    cli.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    cli()
