"""`tools rehearse`: a recipe's multi-GPU run, for real, on CPU — before anyone rents a GPU.

The recipe as written — its DeepSpeed config, full or adapter, SFT or DPO, its packing, its gradient
accumulation, evaluation and saving — is launched the way the GPU run is, ``torchrun --nproc_per_node N -m
axolotl.cli.train CONFIG``, N processes in a gloo process group, through the real Axolotl, on a tiny EXAONE 3.0
model (built here, converted to the Llama layout as a user's download is) and the bundled sample data. Only what
a CPU cannot do changes, and :attr:`Plan.changes` lists each change with its reason:

- :data:`training.cpu_overlay.GPU_ONLY` (bf16 → fp32, flash-attn, fused LoRA and Liger kernels) and the hub and
  tracking keys; the DeepSpeed config's ``bf16``/``fp16`` off (a copy, beside the derived config);
- with sample packing, a ``sequence_len`` that holds the longest sample row, so the 8 rows pack into enough
  rows for every process; LoRA dropout off (each rank draws its own dropout masks, so runs with different
  process counts could not be compared step by step); ``max_steps``; one logged loss per step; one dataset
  worker (no process pool to start for a few rows);
- ``--processes 1`` multiplies ``gradient_accumulation_steps`` by the default 2 processes: the same global batch,
  so a 1-process and a 2-process rehearsal compare step by step;
- the paths (model, data, output), and :class:`training.axolotl_plugins.RehearsalProbe` added to the plugins:
  in each rank it installs the CPU multi-process workarounds (:mod:`training.cpu_multiprocess`) and records
  what the rank saw; and, as in every CPU run, :data:`training.cpu_overlay.IN_PROCESS_SAVE`.

DPO pairs are the sample dialogues' reference summaries (chosen) against another dialogue's summary (rejected),
as many as make the training rows, after the recipe's ``val_set_size`` hold-out, split evenly over the
processes. Then :mod:`training.rehearse_checks` checks every rank's record and what was saved.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from common.checkout import REPO
from dataset_builders.nikl import sample_files
from common.errors import UserError
from common.io import write_json, write_jsonl
from dataset_builders.recipe import load_recipe
from training.cpu_overlay import (GPU_ONLY, IN_PROCESS_SAVE, LOCAL_ONLY, REMOVE, add_plugin, apply_overlay,
                                  write_config)
from training.rehearse_checks import (
    RANK_RECORDS,
    Check,
    adapter_check,
    backend_check,
    batches_check,
    full_weights_check,
    generates_check,
    loads_check,
    losses_check,
    steps_check,
    world_size_check,
    zero_stage_check,
)

DEFAULT_PROCESSES = 2
PROBE = "training.axolotl_plugins.RehearsalProbe"
NO_DEEPSPEED = "none"  # --deepspeed none: DDP, whatever the recipe says
ROW_MULTIPLE = 64  # the packed sequence_len: the longest sample row, rounded up to this


class RehearsalFailed(UserError):
    """The rehearsal ran and a check failed, or the run itself did: the message names which."""


def shown(value: Any) -> str:
    return "(removed)" if value is REMOVE else "(unset)" if value is None else json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Change:
    """One difference between the recipe and the rehearsal's config: the two values as shown, and why."""

    key: str
    recipe: str
    rehearsal: str
    why: str

    @classmethod
    def of(cls, key: str, recipe: Any, rehearsal: Any, why: str) -> "Change":
        return cls(key, shown(recipe), shown(rehearsal), why)

    def line(self) -> str:
        return f"{self.key}: {self.recipe} → {self.rehearsal}  ({self.why})"


@dataclass
class Plan:
    recipe: Path
    processes: int
    workdir: Path
    base_model: Path
    config: dict[str, Any]
    zero_stage: int | None  # None: DDP
    changes: list[Change] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yml"

    @property
    def output_dir(self) -> Path:
        return self.workdir / "output"

    @property
    def ranks_dir(self) -> Path:
        return self.workdir / "ranks"

    @property
    def log(self) -> Path:
        return self.workdir / "rehearsal.log"

    @property
    def mode(self) -> str:
        return "DDP" if self.zero_stage is None else f"DeepSpeed ZeRO-{self.zero_stage}"

    def command(self) -> list[str]:
        """The launch, as on GPUs (``torchrun`` is ``python -m torch.distributed.run``; ``--standalone`` picks a
        free port, so rehearsals side by side do not collide)."""
        return [sys.executable, "-m", "torch.distributed.run", *self.torchrun_arguments()]

    def shown_command(self) -> str:
        """The launch as a user types it."""
        return " ".join(["torchrun", *self.torchrun_arguments()])

    def torchrun_arguments(self) -> list[str]:
        return ["--standalone", "--nproc_per_node", str(self.processes), "-m", "axolotl.cli.train",
                str(self.config_path)]


def default_workdir(recipe: Path, processes: int, deepspeed: str | None) -> Path:
    """``rehearsals/<recipe>-<ddp|zero2|zero3|…>-<N>p``: one folder per recipe, mode and process count."""
    source = deepspeed if deepspeed is not None else load_recipe(recipe).get("deepspeed")
    mode = "ddp" if source in (None, NO_DEEPSPEED) else Path(str(source)).stem.split("_")[0]
    return Path("rehearsals") / f"{recipe.stem}-{mode}-{processes}p"


def find_deepspeed(value: str, source: str) -> Path:
    """A DeepSpeed JSON named by ``source`` (the recipe or ``--deepspeed``): as given, else from the checkout's root
    (where the recipes' relative paths start)."""
    for path in (Path(value), REPO / value):
        if path.is_file():
            return path
    raise UserError(f"DeepSpeed config {value} ({source}): no such file")


def held_out(val_set_size: float | int | None, rows: int) -> int:
    """The rows Axolotl holds out for evaluation (datasets' ``train_test_split``: a fraction rounds up)."""
    if not val_set_size:
        return 0
    return math.ceil(val_set_size * rows) if val_set_size < 1 else int(val_set_size)


def pair_count(examples: int, val_set_size: float | int | None, per_step: int) -> int:
    """The fewest DPO pairs (at least one per example) whose training rows, after the hold-out, are a multiple
    of ``per_step``: every process gets as many, and none trains a row twice."""
    count = examples
    while (count - held_out(val_set_size, count)) % per_step or count - held_out(val_set_size, count) < per_step:
        count += 1
    return count


def sample_rows(cfg: dict[str, Any], recipe: Path, base_model: Path,
                processes: int) -> tuple[dict[str, list], int | None]:
    """The rows the rehearsal trains on (``train``, and ``dev`` when the recipe has a dev set), in the format
    the recipe reads, built from the bundled sample files; and the longest SFT row in tokens."""
    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import DEFAULT_SYSTEM_PROMPT
    from dataset_builders.sft import BuildStats, sft_rows
    from dataset_builders.recipe import row_prompt_builder

    builder, sequence_len = row_prompt_builder(DEFAULT_SYSTEM_PROMPT, (), str(base_model), None, recipe, None)
    splits = ("train", "dev") if cfg.get("test_datasets") else ("train",)
    examples = {split: load_nikl(path, require_output=True) for split, path in zip(splits, sample_files(splits))}
    if not cfg.get("rl"):
        stats = BuildStats()
        rows = {split: sft_rows(found, builder, stats, sequence_len) for split, found in examples.items()}
        return rows, max(stats.row_tokens)
    from dataset_builders.dpo import build_dpo_rows
    from eval.metrics import pair_scorer

    score = pair_scorer("rouge1")
    rows = {}
    per_step = math.lcm(processes, DEFAULT_PROCESSES) * cfg.get("micro_batch_size", 1)
    for split, found in examples.items():
        total = pair_count(len(found), cfg.get("val_set_size") if split == "train" else 0, per_step)
        pairs: dict[str, list[tuple[str, str]]] = {}
        for i in range(total):  # chosen: the reference; rejected: another dialogue's summary
            example, other = found[i % len(found)], found[(i + 1 + i // len(found)) % len(found)]
            pairs.setdefault(example.id, []).append((example.output, other.output))
        rows[split], _ = build_dpo_rows(found, {}, score, builder, human=pairs, max_seq_len=sequence_len)
    return rows, None


def rehearsal_deepspeed(cfg: dict[str, Any], recipe: Path, deepspeed: str | None, workdir: Path,
                        changes: list[Change]) -> int | None:
    """Point ``cfg`` at a copy of its DeepSpeed config (or ``--deepspeed``'s) with bf16/fp16 off, written into
    ``workdir``; return its ZeRO stage (None: no DeepSpeed, DDP)."""
    recipe_value = cfg.get("deepspeed")
    source = deepspeed if deepspeed is not None else recipe_value
    if source in (None, NO_DEEPSPEED):
        cfg.pop("deepspeed", None)
        if recipe_value:
            changes.append(Change.of("deepspeed", recipe_value, REMOVE, f"--deepspeed {NO_DEEPSPEED}: DDP"))
        return None
    label = "--deepspeed" if deepspeed is not None else f"the deepspeed of {recipe}"
    ds = json.loads(find_deepspeed(str(source), label).read_text(encoding="utf-8"))
    precision = []
    for section in ("bf16", "fp16"):
        if (ds.get(section) or {}).get("enabled") is True:
            ds[section]["enabled"] = False
            precision.append(f"{section}.enabled true → false")
    target = workdir / "deepspeed.json"
    write_json(target, ds, indent=2)
    cfg["deepspeed"] = str(target)
    why = f"a copy of {source}{' (--deepspeed)' if deepspeed is not None else ''} in the output folder" + (
        f", {', '.join(precision)}: no half precision on CPU" if precision else "")
    changes.append(Change("deepspeed", shown(recipe_value), target.name, why))
    return int((ds.get("zero_optimization") or {}).get("stage", 0))


def prepare(recipe: Path, *, processes: int = DEFAULT_PROCESSES, deepspeed: str | None = None,
            base_model: Path | None = None, workdir: Path | None = None, max_steps: int = 2) -> Plan:
    """Derive the rehearsal's config from ``recipe`` and write it, with its data (and the tiny model, unless
    ``base_model``), into ``workdir``."""
    if processes < 1 or max_steps < 1:
        raise UserError(f"--processes and --max-steps must be ≥ 1 (got {processes}, {max_steps})")
    cfg = copy.deepcopy(load_recipe(recipe))
    if cfg.get("fsdp") or cfg.get("fsdp_config"):
        raise UserError(f"{recipe}: FSDP is not rehearsed (tools rehearse runs DDP and DeepSpeed)")
    workdir = Path(workdir or default_workdir(recipe, processes, deepspeed)).resolve()
    rehearsal = Plan(recipe, processes, workdir, rehearsal_model(base_model, workdir), cfg, None)
    changes = rehearsal.changes
    for overlay in (GPU_ONLY, LOCAL_ONLY):
        before = {key: cfg.get(key) for key in overlay}
        for key in apply_overlay(cfg, {key: value for key, (value, _) in overlay.items()}):
            changes.append(Change.of(key, before[key], cfg.get(key, REMOVE), overlay[key][1]))
    rehearsal.zero_stage = rehearsal_deepspeed(cfg, recipe, deepspeed, workdir, changes)
    if processes == 1 and rehearsal.zero_stage is not None:
        raise UserError("--processes 1 under DeepSpeed is not rehearsed on CPU: in one process Axolotl starts "
                        "DeepSpeed's process group with NCCL (axolotl/utils/trainer.py:635), which needs a GPU; "
                        f"add --deepspeed {NO_DEEPSPEED} (ZeRO trains the same steps as DDP: docs/rehearse.md)")
    if cfg.get("load_in_4bit") and rehearsal.zero_stage == 3:
        raise UserError(f"{recipe}: a 4-bit base under ZeRO-3 is not rehearsed on CPU: ZeRO-3 gathers its bf16-stored "
                        "4-bit weights together with the fp32 ones, which gloo refuses (on GPUs both are bf16); "
                        "rehearse it with --deepspeed none or deepspeed_configs/zero2.json")

    rows, longest = sample_rows(cfg, recipe, rehearsal.base_model, processes)
    train_rows = len(rows["train"]) - held_out(cfg.get("val_set_size"), len(rows["train"]))
    if processes > train_rows:
        raise UserError(f"--processes {processes}: the sample data gives {train_rows} training rows, one per "
                        f"process at most")
    resize(rehearsal, longest, max_steps)
    data = workdir / "data"
    for split, found in rows.items():
        write_jsonl(data / f"{split}.jsonl", found)
    cfg["datasets"][0]["path"] = str(data / "train.jsonl")
    if "dev" in rows:
        cfg["test_datasets"][0]["path"] = str(data / "dev.jsonl")
    cfg.update(base_model=str(rehearsal.base_model), output_dir=str(rehearsal.output_dir),
               dataset_prepared_path=str(workdir / "prepared"))
    model = "the tiny model" if base_model is None else str(rehearsal.base_model)
    changes.append(Change("base_model, datasets, output_dir, dataset_prepared_path", "the recipe's",
                          f"under {workdir}", f"{model}, {len(rows['train'])} rows from the sample data"))
    add_plugin(cfg, PROBE)
    add_plugin(cfg, IN_PROCESS_SAVE)
    changes.append(Change("plugins", "the recipe's", f"+ {PROBE}, {IN_PROCESS_SAVE}",
                          "in each rank: the CPU multi-process workarounds, and a record of what the rank saw; "
                          "the prepared data saved without a second interpreter"))
    write_config(cfg, rehearsal.config_path, recipe=recipe,
                 purpose="`tools rehearse` for a multi-process run on CPU (training/rehearse.py)")
    return rehearsal


def rehearsal_model(base_model: Path | None, workdir: Path) -> Path:
    """``base_model`` (which must exist), else the tiny EXAONE 3.0 model in ``workdir/model``, built once."""
    from common.paths import MAKES_BASE_MODEL, require_local

    if base_model is not None:
        require_local(base_model, "--base-model", MAKES_BASE_MODEL + ", `tools build-tiny-model` a tiny one")
        return Path(base_model).resolve()
    from exaone.tiny import build_tiny_model

    if not (workdir / "model" / "config.json").is_file():
        build_tiny_model(workdir / "model")
    return workdir / "model"


def resize(rehearsal: Plan, longest: int | None, max_steps: int) -> None:
    """The rehearsal's size: packed rows that hold the longest sample row, LoRA dropout off, the global batch of
    :data:`DEFAULT_PROCESSES` in one process, a few steps with a loss each, no preprocessing pool."""
    cfg = rehearsal.config

    def change(key: str, value: Any, why: str) -> None:
        if cfg.get(key) != value:
            rehearsal.changes.append(Change.of(key, cfg.get(key), value, why))
            cfg[key] = value

    if cfg.get("sample_packing") and longest:
        change("sequence_len", -(-longest // ROW_MULTIPLE) * ROW_MULTIPLE,
               f"the longest sample row is {longest} tokens: one row per packed row, so every process gets rows")
    if cfg.get("adapter"):
        change("lora_dropout", 0.0, "each rank draws its own dropout masks: no step-by-step comparison otherwise")
    if rehearsal.processes == 1:
        change("gradient_accumulation_steps", cfg.get("gradient_accumulation_steps", 1) * DEFAULT_PROCESSES,
               f"one process carries the global batch of {DEFAULT_PROCESSES}: the two compare step by step")
    change("max_steps", max_steps, "a rehearsal: a few optimizer steps")
    change("logging_steps", 1, "a loss per optimizer step")
    change("dataset_num_proc", 1, "a few sample rows: no worker pool to start (preprocessing only)")


def run_env(plan: Plan) -> dict[str, str]:
    """The ranks' environment: offline, CPU only (a GPU, if any, stays unused: a CPU rehearsal everywhere),
    one torch thread per rank unless set, where to write the rank records, and where DeepSpeed keeps the
    CPU communication op it compiles on first use (~30 s): inside this environment, built once."""
    from common.env import offline_env

    env = offline_env()
    env.update({RANK_RECORDS: str(plan.ranks_dir), "CUDA_VISIBLE_DEVICES": ""})
    env.setdefault("OMP_NUM_THREADS", "1")
    if os.access(sys.prefix, os.W_OK):
        env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    return env


def launch(plan: Plan, timeout: float = 900) -> float:
    """Run the N processes (their output into ``plan.log``); returns the wall time. A failure, or no end
    within ``timeout`` seconds (a hang: every process is stopped), raises naming the log and its last lines."""
    from common.io import tail

    for stale in (plan.output_dir, plan.ranks_dir):
        shutil.rmtree(stale, ignore_errors=True)
    start = time.perf_counter()
    with open(plan.log, "w", encoding="utf-8") as log:
        process = subprocess.Popen(plan.command(), env=run_env(plan), stdout=log, stderr=subprocess.STDOUT)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(process)
            code = None
        except BaseException:  # Ctrl-C, SIGTERM: no rank left behind
            stop(process)
            raise
    if code != 0:
        import click

        for line in tail(plan.log, 12):
            click.echo(f"    {line}", err=True)
        what = f"exited with code {code}" if code is not None else f"did not end within {timeout:.0f} s (a hang?)"
        error = first_error(plan.log)
        raise RehearsalFailed(f"the {plan.processes}-process run {what}{f': {error}' if error else ''} (its last "
                              f"lines are above; the whole log: {plan.log})")
    return time.perf_counter() - start


def stop(process: subprocess.Popen) -> None:
    """Stop torchrun the way that lets it stop its ranks (SIGTERM: they run in sessions of their own); kill it if
    it has not ended within a minute."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def first_error(log: Path) -> str | None:
    """The first exception a rank raised (``[rank1]: ValueError: …``), without the rank prefix, shortened."""
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        found = re.match(r"(?:\[rank\d+\]: )?(\w+(?:Error|Exception): .*)", line)
        if found:
            return found.group(1)[:300]
    return None


def read_ranks(plan: Plan) -> list[dict[str, Any]]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(plan.ranks_dir.glob("rank-*.json"))]


def checks(plan: Plan, ranks: list[dict[str, Any]], run_tools: Callable[..., None]) -> list[Check]:
    """Every check of the run: the ranks' records, then what was saved (see :mod:`training.rehearse_checks`)."""
    first = min(ranks, key=lambda rank: rank["rank"], default={"steps": 0, "losses": []})
    found = [world_size_check(ranks, plan.processes),
             backend_check(ranks, plan.processes, plan.zero_stage is not None),
             batches_check(ranks), steps_check(first["steps"]), losses_check(first["losses"], first["steps"])]
    if plan.zero_stage is not None:
        found.append(zero_stage_check(ranks, plan.zero_stage))
    if plan.config.get("adapter"):
        found.append(adapter_check(plan.output_dir, plan.base_model))
    else:
        found += [full_weights_check(plan.output_dir, plan.base_model), loads_check(plan.output_dir)]
    dev = sample_files(("dev",))[0]
    found.append(generates_check(plan.output_dir, dev, plan.workdir / "infer" / "dev.json", run_tools))
    return found


def record(plan: Plan, ranks: list[dict[str, Any]], found: list[Check], seconds: float) -> dict[str, Any]:
    """What ``rehearsal.json`` holds."""
    first = min(ranks, key=lambda rank: rank["rank"], default={"steps": 0, "losses": []})
    return {
        "recipe": str(plan.recipe),
        "processes": plan.processes,
        "mode": plan.mode,
        "deepspeed": plan.config.get("deepspeed"),
        "zero_stage": plan.zero_stage,
        "command": plan.shown_command(),
        "changes": [change.line() for change in plan.changes],
        "ranks": ranks,
        "steps": first["steps"],
        "losses": first["losses"],
        "checks": {check.name: check.ok for check in found},
        "details": {check.name: check.detail for check in found},
        "wall_seconds": round(seconds, 1),
    }


def require_passed(found: list[Check], record_file: Path) -> None:
    """Raise, naming every failed check, unless all passed."""
    failed = [check.name for check in found if not check.ok]
    if failed:
        raise RehearsalFailed(f"rehearsal failed: {'; '.join(failed)} (see {record_file})")


def checks_table(found: list[Check]) -> str:
    lines = ["| check | result | found |", "|---|---|---|"]
    lines += [f"| {check.name} | {'pass' if check.ok else 'FAIL'} | {check.detail} |" for check in found]
    return "\n".join(lines)
