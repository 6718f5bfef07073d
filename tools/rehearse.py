"""`tools rehearse`: a recipe's multi-GPU run, for real, on CPU, then checked (logic: :mod:`training.rehearse`)."""

from __future__ import annotations

from pathlib import Path

import click

from tools.demo import tools_runner
from tools.options import library_default
from training.rehearse import DEFAULT_PROCESSES, NO_DEEPSPEED, launch, prepare


@click.command("rehearse")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--processes", default=library_default(prepare, "processes"), show_default=True,
              type=click.IntRange(1, 64),
              help="Processes, as GPUs on the real machine. 1 keeps the global batch of the default "
                   f"{DEFAULT_PROCESSES} (gradient accumulation × {DEFAULT_PROCESSES}): the two compare step by step "
                   f"(under DeepSpeed: with --deepspeed {NO_DEEPSPEED}).")
@click.option("--deepspeed", default=None, metavar="CONFIG|none",
              help=f"DeepSpeed JSON instead of the recipe's; `{NO_DEEPSPEED}`: DDP  [default: the recipe's]")
@click.option("--base-model", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder to train  [default: a tiny EXAONE 3.0 model, built in OUTPUT_DIR/model]")
@click.option("--output-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where the config, data, run, log and rehearsal.json go  "
                   "[default: rehearsals/<recipe>-<ddp|zero2|zero3>-<N>p, e.g. rehearsals/exaone_sft-zero3-2p]")
@click.option("--max-steps", default=library_default(prepare, "max_steps"), show_default=True,
              type=click.IntRange(1, 10_000), help="Optimizer steps.")
@click.option("--timeout", default=library_default(launch, "timeout"), show_default=True,
              type=click.IntRange(1, 7 * 24 * 3600), help="Seconds the run may take; past them it is stopped as a hang.")
def rehearse(recipe, processes, deepspeed, base_model, output_dir, max_steps, timeout):
    """Rehearse a recipe's multi-GPU run on CPU: N processes, its DeepSpeed config, the real Axolotl.

    The recipe as written is launched as on GPUs (`torchrun --nproc_per_node N -m axolotl.cli.train`) with a
    tiny model and the bundled sample data; only what a CPU cannot do changes (each change is listed).
    Then every rank's view (world size, backend, ZeRO stage), the losses and the saved weights are checked:
    one table, and OUTPUT_DIR/rehearsal.json. A failed check exits non-zero, naming it.

    \b
    Examples:
      tools rehearse recipes/exaone_sft.yml                 # 2 processes, DeepSpeed ZeRO-3
      tools rehearse recipes/exaone_dpo.yml --processes 1   # the same global batch in one process
      tools rehearse recipes/exaone_lora.yml --deepspeed deepspeed_configs/zero3_bf16.json
    """
    from common.io import write_json
    from training.rehearse import checks, checks_table, read_ranks, record, require_passed

    rehearsal = prepare(recipe, processes=processes, deepspeed=deepspeed, base_model=base_model,
                        workdir=output_dir, max_steps=max_steps)
    click.echo(f"{recipe}: {rehearsal.mode}, {processes} process{'es' if processes > 1 else ''}, "
               f"{max_steps} steps; changed from the recipe:")
    for change in rehearsal.changes:
        click.echo(f"  {change.line()}")
    click.echo(f"$ {rehearsal.shown_command()}   (log: {rehearsal.log})")
    seconds = launch(rehearsal, timeout)
    ranks = read_ranks(rehearsal)
    found = checks(rehearsal, ranks, tools_runner(click.get_current_context().find_root().command))
    result = record(rehearsal, ranks, found, seconds)
    record_file = rehearsal.workdir / "rehearsal.json"
    write_json(record_file, result, indent=2)
    click.echo(f"\nlosses: {' '.join(f'{loss:.6f}' for loss in result['losses'])}   ({seconds:.0f} s)\n")
    click.echo(checks_table(found))
    require_passed(found, record_file)
    click.echo(f"\nall {len(found)} checks passed: {record_file}")
