"""The `tools` command group: the click layer. Commands import their heavy dependencies inside, so `--help`
is instant; library code raises :class:`common.errors.UserError`, which becomes a one-line error here."""

from __future__ import annotations

import os
import signal
import sys
import threading

import click

from common.errors import UserError
from common.io import WRITTEN
from common.quiet import silence_known_noise
from tools.build_dpo_data import build_dpo_data
from tools.build_learnable_task import build_learnable_task
from tools.build_sft_data import build_sft_data
from tools.build_synthetic_data import build_synthetic_data
from tools.build_tiny_model import build_tiny_model_command
from tools.check_data import check_data
from tools.compare import compare
from tools.convert_exaone import convert_exaone
from tools.cpu_overlay import cpu_overlay
from tools.demo import demo
from tools.infer import infer
from tools.options import FINAL_OUTPUT
from tools.rehearse import rehearse
from tools.rerank import rerank
from tools.score import score
from tools.select_checkpoint import select_checkpoint
from tools.versions import versions


def terminate_cleanly() -> None:
    """SIGTERM raises ``SystemExit(143)`` instead of killing the process outright, so unfinished temporary
    files are removed (``common.io.atomic_open``) and locks released on the way out."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def replace_unprintable_characters() -> None:
    """Text the terminal's encoding cannot show (``—`` or ``−`` under ``LANG=ko_KR.EUC-KR``) is printed as ``?``
    instead of failing the command: what is printed is for reading, the files keep every character."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def completed_output(ctx: click.Context, since: int) -> str | None:
    """The command's final output (:func:`tools.options.final_output`) when it was written after ``since`` (an
    index into :data:`common.io.WRITTEN`): the command's work is done."""
    final = ctx.meta.get(FINAL_OUTPUT)
    return str(final) if final is not None and os.path.realpath(final) in WRITTEN[since:] else None


class ToolsGroup(click.Group):
    """The one place where a :class:`UserError` becomes ``Error: <message>`` and exit code 1; Ctrl-C exits
    with 130 and one line (0 when the command's output was already written: it is complete); any other
    exception keeps its traceback."""

    def invoke(self, ctx: click.Context):
        terminate_cleanly()
        replace_unprintable_characters()
        since = len(WRITTEN)
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            if done := completed_output(ctx, since):
                click.echo(f"\ninterrupted after {done} was written: it is complete", err=True)
                raise click.exceptions.Exit(0) from None
            click.echo("\ninterrupted: nothing half-written is left behind (infer and select-checkpoint resume "
                       "when re-run)", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=ToolsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nikl-dialogue-summarization")
def cli():
    """Fine-tune Korean LLMs on NIKL 일상 대화 요약: data, inference, scoring."""
    silence_known_noise()


for command in (build_sft_data, build_dpo_data, build_learnable_task, build_synthetic_data, build_tiny_model_command,
                check_data, compare, convert_exaone, cpu_overlay, demo, infer, rehearse, rerank, score, select_checkpoint,
                versions):
    cli.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    cli()
