"""`tools demo` (what `make demo` runs): the whole pipeline on CPU with a tiny model (:mod:`workflow.demo`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from common.env import OFFLINE_ENV
from workflow.demo import build_pipeline
from workflow.stages import StageFailed, results_table


def tools_runner(group: click.Group):
    """A function running one command of ``group`` in-process; a click error becomes :class:`StageFailed`."""

    def run_tools(*args: object) -> None:
        argv = [str(arg) for arg in args]
        click.secho(f"$ tools {' '.join(argv)}", dim=True)
        try:
            group.main(args=argv, prog_name="tools", standalone_mode=False)
        except click.ClickException as error:
            raise StageFailed(f"tools {argv[0]}: {error.format_message()}") from None

    return run_tools


@click.command("demo")
@click.option("--workdir", default="demo_out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where every stage writes its outputs; re-running skips stages that are up to date.")
@click.option("--fast/--full", default=None,
              help="Fewer training steps and shorter generations (default: --fast when DEMO_FAST=1).")
def demo(workdir, fast):
    """Run the whole pipeline on CPU with the bundled sample data and a tiny model.

    \b
    Example:
      make demo                  # = tools demo --workdir demo_out
      DEMO_FAST=1 make demo      # the reduced variant CI runs
    """
    if fast is None:
        fast = os.environ.get("DEMO_FAST", "") not in ("", "0")
    os.environ.update(OFFLINE_ENV)  # everything the demo needs is local: no hub, no telemetry, no tracking
    root = click.get_current_context().find_root().command
    pipeline = build_pipeline(Path(workdir), fast=fast, run_tools=tools_runner(root))
    results = pipeline.run()
    table = results_table(results)
    (Path(workdir) / "demo_results.md").write_text(table + "\n", encoding="utf-8")
    click.echo("\n" + table)
    click.echo("\nThe tiny random model's scores are meaningless; every stage above ran for real.")
