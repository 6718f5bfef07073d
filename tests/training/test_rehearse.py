"""`tools rehearse` for real: several processes through torchrun and the real Axolotl on the tiny model.

The default suite rehearses the full fine-tune (`exaone_sft.yml`, DeepSpeed ZeRO-3) and DPO (`exaone_dpo.yml`,
DDP) with 2 processes. Under ``-m rehearse_matrix`` (CI) every recipe runs with DDP, ZeRO-2 and ZeRO-3, and the
equivalences hold: 1 process = 2 processes for DPO and for LoRA SFT (token averaging across devices), ZeRO-3 =
DDP for the full fine-tune; a packed run that leaves a process no rows is refused before training.
Each rehearsal runs once per test run (conftest.run_once), whichever test asks first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REHEARSAL_MODES, REPO

RECIPES = REPO / "recipes"

pytestmark = [pytest.mark.axolotl, pytest.mark.rehearse]

RECIPE_MODES = {"exaone_sft.yml": "zero3", "exaone_lora.yml": "ddp", "exaone_qlora.yml": "ddp",
                "exaone_dpo.yml": "ddp"}  # what each recipe runs with as shipped
TOLERANCE = 1e-6


def assert_rehearsed(record: dict, processes: int, stage: int | None) -> None:
    assert record["processes"] == processes and len(record["ranks"]) == processes
    for rank in record["ranks"]:
        assert rank["world_size"] == processes and rank["backend"] == "gloo", rank
        assert rank["distributed_type"] == ("MULTI_CPU" if stage is None else "DEEPSPEED"), rank
        assert rank["zero_stage"] == stage and rank["batches"] > 0, rank
        assert rank["average_tokens_across_devices"] is True, rank  # the recipes' MultiGpuGuard took effect
    assert record["zero_stage"] == stage
    assert record["steps"] == 2 and len(record["losses"]) == 2
    assert record["checks"] and all(record["checks"].values()), record["details"]


def adapter_tensors(work: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(work / "output" / "adapter_model.safetensors"))


# --------------------------------------------------------------------------- the default suite


def test_full_fine_tune_rehearses_with_zero3_on_two_processes(rehearsal):
    work, record, output = rehearsal("exaone_sft.yml", RECIPE_MODES["exaone_sft.yml"])
    assert_rehearsed(record, 2, stage=3)
    assert {"saved weights: the base's names and shapes, none empty", "transformers loads it",
            "`tools infer --ckpt` generates with it"} <= set(record["checks"])
    assert "bf16: true → false" in output and "sequence_len: 4096 → 256" in output  # each change is listed
    assert json.loads((work / "deepspeed.json").read_text())["bf16"]["enabled"] is False
    assert "torchrun --standalone --nproc_per_node 2 -m axolotl.cli.train" in record["command"]


def test_dpo_rehearses_with_ddp_on_two_processes(rehearsal):
    work, record, output = rehearsal("exaone_dpo.yml", RECIPE_MODES["exaone_dpo.yml"])
    assert_rehearsed(record, 2, stage=None)
    assert "saved adapter: whole LoRA tensors, none empty" in record["checks"]
    assert "lora_dropout: 0.05 → 0.0" in output
    assert not (work / "output" / "model.safetensors").exists()  # AdapterOnlyOutput ran in the ranks too


# --------------------------------------------------------------------------- the whole matrix (CI)


# A 4-bit base under ZeRO-3 is refused on CPU (tests/training/test_rehearse_checks.py says why); every other pair runs.
MATRIX = [(recipe, mode) for recipe in sorted(RECIPE_MODES) for mode in sorted(REHEARSAL_MODES)
          if (recipe, mode) != ("exaone_qlora.yml", "zero3")]


@pytest.mark.rehearse_matrix
@pytest.mark.parametrize(("recipe", "mode"), MATRIX, ids=[f"{Path(r).stem}-{m}" for r, m in MATRIX])
def test_every_recipe_rehearses_in_every_mode(rehearsal, recipe, mode):
    _, record, _ = rehearsal(recipe, mode)
    assert_rehearsed(record, 2, stage=None if mode == "ddp" else int(mode[-1]))


@pytest.mark.rehearse_matrix
def test_dpo_on_one_process_equals_two(rehearsal):
    two, two_record, _ = rehearsal("exaone_dpo.yml", "ddp", processes=2)
    one, one_record, output = rehearsal("exaone_dpo.yml", "ddp", processes=1)
    assert "gradient_accumulation_steps: 8 → 16" in output
    assert one_record["losses"] == pytest.approx(two_record["losses"], abs=TOLERANCE)
    one_adapter, two_adapter = adapter_tensors(one), adapter_tensors(two)
    assert one_adapter.keys() == two_adapter.keys()
    assert max((one_adapter[key] - two_adapter[key]).abs().max().item() for key in one_adapter) < TOLERANCE


@pytest.mark.rehearse_matrix
def test_sft_loss_does_not_depend_on_the_process_count(rehearsal):
    """Tokens averaged across devices (MultiGpuGuard): a packed LoRA SFT step on 2 processes = 1 process."""
    _, two, _ = rehearsal("exaone_lora.yml", "ddp", processes=2)
    _, one, _ = rehearsal("exaone_lora.yml", "ddp", processes=1)
    assert one["losses"] == pytest.approx(two["losses"], abs=TOLERANCE)


@pytest.mark.rehearse_matrix
def test_full_fine_tune_zero3_equals_ddp(rehearsal):
    from safetensors.torch import load_file

    zero3, zero3_record, _ = rehearsal("exaone_sft.yml", "zero3")
    ddp, ddp_record, _ = rehearsal("exaone_sft.yml", "ddp")
    assert zero3_record["losses"] == pytest.approx(ddp_record["losses"], abs=TOLERANCE)
    saved = [load_file(str(work / "output" / "model.safetensors")) for work in (zero3, ddp)]
    assert max((saved[0][key] - saved[1][key]).abs().max().item() for key in saved[0]) < TOLERANCE


@pytest.mark.rehearse_matrix
def test_a_packed_run_leaving_a_process_without_rows_stops_before_training(tiny_model, tmp_path):
    """MultiGpuGuard: the recipe's sequence_len packs the 8 sample rows into one row, for 2 processes."""
    from training.cpu_overlay import write_config
    from training.rehearse import RehearsalFailed, launch, prepare, read_ranks

    recipe = RECIPES / "exaone_lora.yml"
    rehearsal = prepare(recipe, deepspeed="none", base_model=tiny_model, workdir=tmp_path)
    rehearsal.config["sequence_len"] = 4096  # the recipe's own
    write_config(rehearsal.config, rehearsal.config_path, recipe=recipe)
    with pytest.raises(RehearsalFailed, match="exited with code 1"):
        launch(rehearsal)
    log = rehearsal.log.read_text(encoding="utf-8")
    assert "fewer than the 2 processes" in log and "lower sequence_len, or use fewer GPUs" in log
    assert read_ranks(rehearsal) == []  # no rank started training
