"""`tools demo` (what `make demo` runs): the whole pipeline on CPU with a tiny model (:mod:`demo.pipeline`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from common.env import OFFLINE_ENV
from common.io import write_text
from demo.pipeline import build_pipeline
from tools.options import THREADS
from demo.stages import StageFailed, results_table


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
              help="--fast: the same stages at a size that only shows they run (no learning line is checked); "
                   "default: --fast when DEMO_FAST=1.")
@click.option("--threads", type=THREADS, default=1, show_default=True,
              help="CPU threads for torch. The tiny model gains little from more, and a stage that starts while "
                   "the machine is idle keeps its threads when other work starts (docs/inference.md, \"CPU threads\").")
@click.option("--verbose", is_flag=True, help="Stream every stage's output here instead of to WORKDIR/logs/.")
def demo(workdir, fast, threads, verbose):
    """Run the whole pipeline on CPU on a task a tiny model learns (tools build-learnable-task).

    One line per stage; each stage's full output goes to WORKDIR/logs/NN-<stage>.log (a failing stage
    shows its log's path and last lines). Then one table (stage, time, output, score), the learning lines
    (PASS/FAIL: the model learnt the task, its summaries stop, selection and DPO did not make it worse), and
    WORKDIR/demo_results.md and demo_results.json (every stage's dev ROUGE-1). Exits 1 when a line fails.
    docs/demo.md says what each line guards.

    \b
    Example:
      make demo                  # = tools demo --workdir demo_out
      DEMO_FAST=1 make demo      # the reduced variant the test suite runs
    """
    from common.devices import use_threads
    from common.errors import UserError
    from common.io import write_json
    from demo.pipeline import collect_results
    from demo.learning_checks import learning_checks

    if fast is None:
        fast = os.environ.get("DEMO_FAST", "") not in ("", "0")
    os.environ.update(OFFLINE_ENV)  # everything the demo needs is local: no hub, no telemetry, no tracking
    # One thread count for the in-process stages and, through OMP_NUM_THREADS, for Axolotl's processes.
    os.environ["OMP_NUM_THREADS"] = str(use_threads(threads))
    workdir = Path(workdir)
    root = click.get_current_context().find_root().command
    pipeline = build_pipeline(workdir, fast=fast, run_tools=tools_runner(root))
    pipeline.log_dir = None if verbose else workdir / "logs"
    results = pipeline.run()
    learning = collect_results(workdir, fast=fast)
    checks = [] if fast else learning_checks(learning)
    lines = [check.line() for check in checks] or [
        "learning lines: not checked with --fast (a few training steps cannot learn the task; `make demo` checks them)"]
    table = results_table(results)
    write_text(workdir / "demo_results.md", table + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
    write_json(workdir / "demo_results.json", {**learning.rouge1, "fast": fast, "details": learning.to_json(),
                                               "checks": [check.__dict__ for check in checks]}, indent=2)
    click.echo("\n" + table + "\n")
    for check, line in zip(checks or [None] * len(lines), lines):
        click.secho(line, fg=None if check is None else ("green" if check.passed else "red"))
    failed = [check.name for check in checks if not check.passed]
    if failed:
        raise UserError(f"{len(failed)} learning line(s) failed: {', '.join(failed)} (see above and docs/demo.md)")
