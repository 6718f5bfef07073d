"""`tools versions`: the installed stack, a line per component."""

from __future__ import annotations

from pathlib import Path

import click

from common.errors import UserError


@click.command("versions")
@click.option("--resolved", "reports", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A `pip install --dry-run --report FILE` (`make check-gpu-deps` writes two): also say which "
                   "versions of the components pip would install. Repeatable.")
def versions(reports):
    """One line per component: torch (and its CUDA, the GPUs it sees), Axolotl, transformers, flash-attn,
    DeepSpeed, vLLM (here, or in its own environment) — the version, "not installed", or why an installed one
    does not import (exit 1).

    \b
    Example:
      tools versions                                   # after `make install-gpu` (it ends with this)
    """
    from common.stack import COMPONENTS, resolved, stack

    resolutions = {report: resolved(report) for report in reports}  # a bad file is an error before any output
    broken = []
    for status in stack():
        click.echo(status.line())
        if status.problem:
            broken.append(status.component.distribution)
    for report, would_install in resolutions.items():
        named = [f"{component.distribution} {would_install[component.distribution]}" for component in COMPONENTS
                 if component.distribution in would_install]
        click.echo(f"{report}: pip would install {len(would_install)} package(s)"
                   + (f", of them {', '.join(named)}" if named else ""))
    if broken:
        raise UserError(f"installed but broken (does not import or run): {', '.join(broken)} (see above)")
