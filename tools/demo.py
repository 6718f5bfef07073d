"""`tools demo` (what `make demo` runs): the whole pipeline on CPU with a tiny model (:mod:`workflow.demo`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from common.env import OFFLINE_ENV
from common.io import write_text
from workflow.demo import build_pipeline
from tools.options import THREADS
from workflow.stages import StageFailed, results_table


def tools_runner(group: click.Group):
    """A function running one command of ``group`` in-process; a click error becomes :class:`StageFailed`."""

    def run_tools(*args: object) -> None:
        argv = [str(arg) for arg in args]
        click.secho(f"$ tools {' '.join(argv)}", dim=True)
        try:
            code = group.main(args=argv, prog_name="tools", standalone_mode=False)
        except click.ClickException as error:
            raise StageFailed(f"tools {argv[0]}: {error.format_message()}") from None
        if code == 130:  # Ctrl-C inside the command: stop the whole demo, not just this stage
            raise KeyboardInterrupt
        if code not in (None, 0):
            raise StageFailed(f"tools {argv[0]} exited with code {code}")

    return run_tools


@click.command("demo")
@click.option("--workdir", default="demo_out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where every stage writes its outputs; re-running skips stages that are up to date.")
@click.option("--fast/--full", default=None,
              help="Fewer training steps and shorter generations (default: --fast when DEMO_FAST=1).")
@click.option("--threads", type=THREADS, default=1, show_default=True,
              help="CPU threads for torch. The tiny model gains little from more, and a stage that starts while "
                   "the machine is idle keeps its threads when other work starts (docs/inference.md, \"CPU threads\").")
@click.option("--verbose", is_flag=True, help="Stream every stage's output here instead of to WORKDIR/logs/.")
def demo(workdir, fast, threads, verbose):
    """Run the whole pipeline on CPU with the bundled sample data and a tiny model.

    One line per stage; each stage's full output goes to WORKDIR/logs/NN-<stage>.log (a failing stage
    shows its log's path and last lines).

    \b
    Example:
      make demo                  # = tools demo --workdir demo_out
      DEMO_FAST=1 make demo      # the reduced variant CI runs
    """
    from common.devices import use_threads

    if fast is None:
        fast = os.environ.get("DEMO_FAST", "") not in ("", "0")
    os.environ.update(OFFLINE_ENV)  # everything the demo needs is local: no hub, no telemetry, no tracking
    # One thread count for the in-process stages and, through OMP_NUM_THREADS, for Axolotl's processes.
    os.environ["OMP_NUM_THREADS"] = str(use_threads(threads))
    root = click.get_current_context().find_root().command
    pipeline = build_pipeline(Path(workdir), fast=fast, run_tools=tools_runner(root))
    pipeline.log_dir = None if verbose else Path(workdir) / "logs"
    results = pipeline.run()
    table = results_table(results)
    write_text(Path(workdir) / "demo_results.md", table + "\n")
    click.echo("\n" + table)
    click.echo("\nThe tiny random model's scores are meaningless; every stage above ran for real.")
