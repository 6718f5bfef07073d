"""A tiny make-like stage runner for multi-step pipelines (used by `tools demo`).

Each stage declares its inputs and outputs; a stage whose outputs all exist and are newer than all
its inputs is skipped, so a re-run resumes after the last finished stage. The first failing stage
stops the run with its error. A stage is any callable: `tools demo` passes ones that run ``tools``
commands in-process (no start-up cost per call) and :func:`run_program` for other programs (``axolotl``).

With a ``log_dir``, each stage's whole output — its commands, progress bars, library logs, the output of
the programs it starts — goes to ``log_dir/NN-<stage>.log`` (captured at the file-descriptor level), and
the terminal shows one line per stage; a failing stage's log path and last lines are shown.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import click

from common.errors import UserError
from common.io import tail


class StageFailed(UserError):
    """A stage failed; the message says which and why."""


@dataclass
class Stage:
    name: str
    run: Callable[[], None]
    outputs: Sequence[Path]
    inputs: Sequence[Path] = ()
    score: Callable[[], str] | None = None  # what to show in the table's score column, read after the run


@dataclass
class StageResult:
    name: str
    seconds: float
    output: Path
    skipped: bool
    score: str = ""


def up_to_date(stage: Stage) -> bool:
    outputs = [Path(path) for path in stage.outputs]
    if not outputs or not all(path.exists() for path in outputs):
        return False
    newest_input = max((Path(path).stat().st_mtime for path in stage.inputs if Path(path).exists()), default=0.0)
    return min(path.stat().st_mtime for path in outputs) >= newest_input


def run_program(*args: object, env: dict[str, str] | None = None) -> None:
    """Run an external program, streaming its output; a non-zero exit becomes :class:`StageFailed`."""
    argv = [str(arg) for arg in args]
    click.secho(f"$ {' '.join(argv)}", dim=True)
    result = subprocess.run(argv, env=env, check=False)
    if result.returncode != 0:
        raise StageFailed(f"{' '.join(argv[:4])} … exited with code {result.returncode}")


@contextlib.contextmanager
def captured(log_path: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr — by Python, by C libraries, by child processes — to
    ``log_path`` while the block runs."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


@dataclass
class Pipeline:
    stages: list[Stage] = field(default_factory=list)
    log_dir: Path | None = None  # each stage's output goes to a log file there (else to the terminal)

    def add(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        return stage

    def run(self) -> list[StageResult]:
        results = []
        total = len(self.stages)
        for number, stage in enumerate(self.stages, 1):
            header = f"[{number}/{total}] {stage.name}"
            if up_to_date(stage):
                click.secho(f"{header}: up to date, skipped", fg="cyan")
                results.append(StageResult(stage.name, 0.0, Path(stage.outputs[0]), True, self._score(stage)))
                continue
            log = self.log_path(number, stage) if self.log_dir else None
            click.secho(f"{header} …", fg="cyan", bold=True, nl=log is None)
            start = time.perf_counter()
            try:
                with captured(log) if log else contextlib.nullcontext():
                    stage.run()
                missing = [str(path) for path in stage.outputs if not Path(path).exists()]
                if missing:
                    raise StageFailed(f"did not write {', '.join(missing)}")
            except StageFailed as error:
                if log:
                    click.secho(" failed", fg="red")
                    for line in tail(log):
                        click.echo(f"    {line}", err=True)
                where = f" (full log: {log})" if log else ""
                raise StageFailed(f"stage {number}/{total} '{stage.name}' failed: {error}{where}") from None
            seconds = time.perf_counter() - start
            if log:
                click.echo(f" {seconds:.1f} s")
            for path in stage.outputs:  # mark outputs as produced now, after every input
                Path(path).touch()
            results.append(StageResult(stage.name, seconds, Path(stage.outputs[0]), False, self._score(stage)))
        return results

    def log_path(self, number: int, stage: Stage) -> Path:
        assert self.log_dir is not None
        slug = re.sub(r"[^a-z0-9]+", "-", stage.name.lower()).strip("-")
        return self.log_dir / f"{number:02d}-{slug}.log"

    @staticmethod
    def _score(stage: Stage) -> str:
        return stage.score() if stage.score else ""


def results_table(results: Sequence[StageResult]) -> str:
    """A markdown table: stage, time, output path, score."""
    lines = ["| stage | time | output | score |", "|---|---:|---|---|"]
    for result in results:
        time_text = "skipped" if result.skipped else f"{result.seconds:.1f} s"
        lines.append(f"| {result.name} | {time_text} | {result.output} | {result.score} |")
    total = sum(result.seconds for result in results)
    lines.append(f"| **total** | {total:.1f} s | | |")
    return "\n".join(lines)
