"""`tools rehearse` without running it: each check fails on the broken input it exists for, the CPU
multi-process workarounds stay off where they must, and the derived config changes only what it lists.
(The rehearsals themselves: tests/training/test_rehearse.py.)"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from helpers import DEV, REPO, one_line_error, random_lora, tools_cli
from training.cpu_overlay import GPU_ONLY, IN_PROCESS_SAVE
from training.rehearse import DEFAULT_PROCESSES, PROBE, RehearsalFailed, held_out, pair_count, prepare, require_passed
from training.rehearse_checks import (
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

RECIPES = REPO / "recipes"


def rank(number: int, **changes) -> dict:
    """A rank's record as RehearsalProbe writes it, for a healthy 2-process DeepSpeed ZeRO-3 run."""
    return {"rank": number, "world_size": 2, "backend": "gloo", "distributed_type": "DEEPSPEED", "zero_stage": 3,
            "batches": 4, "steps": 2, "losses": [7.61, 7.60], **changes}


# --------------------------------------------------------------------------- what each rank saw


def test_rank_checks_pass_on_a_healthy_run():
    ranks = [rank(0), rank(1)]
    for check in (world_size_check(ranks, 2), backend_check(ranks, 2, deepspeed=True), batches_check(ranks),
                  zero_stage_check(ranks, 3)):
        assert check.ok, check


def test_a_rank_that_saw_another_world_size_fails():
    assert not world_size_check([rank(0), rank(1, world_size=1)], 2).ok
    assert not world_size_check([rank(0)], 2).ok  # a rank that never reported
    assert not world_size_check([rank(0), rank(0)], 2).ok


def test_a_rank_training_alone_fails_the_backend_check():
    # stock accelerate on CPU: no process group, the trainer not distributed (each rank its own copy)
    alone = [rank(0, backend=None, distributed_type="NO"), rank(1, backend=None, distributed_type="NO")]
    assert not backend_check(alone, 2, deepspeed=False).ok
    assert not backend_check([rank(0), rank(1)], 2, deepspeed=False).ok  # DeepSpeed ran where DDP was asked for
    ddp = [rank(0, distributed_type="MULTI_CPU"), rank(1, distributed_type="MULTI_CPU")]
    assert backend_check(ddp, 2, deepspeed=False).ok and not backend_check(ddp, 2, deepspeed=True).ok
    single = [rank(0, world_size=1, backend="undefined", distributed_type="NO")]  # torchrun's 1-process group
    assert backend_check(single, 1, deepspeed=False).ok and not backend_check(ddp[:1], 1, deepspeed=False).ok


def test_a_rank_without_batches_fails():
    assert not batches_check([rank(0), rank(1, batches=0)]).ok
    assert not batches_check([]).ok


def test_an_engine_at_another_zero_stage_fails():
    assert not zero_stage_check([rank(0), rank(1, zero_stage=2)], 3).ok
    assert not zero_stage_check([rank(0, zero_stage=None), rank(1, zero_stage=None)], 3).ok


def test_any_failed_check_fails_the_rehearsal_naming_it(tmp_path):
    found = [world_size_check([rank(0), rank(1)], 2), losses_check([7.6, math.nan], 2), steps_check(0)]
    with pytest.raises(RehearsalFailed) as failure:
        require_passed(found, tmp_path / "rehearsal.json")
    assert str(failure.value) == (f"rehearsal failed: a finite loss at every step; optimizer steps > 0 "
                                  f"(see {tmp_path / 'rehearsal.json'})")
    require_passed(found[:1], tmp_path / "rehearsal.json")  # all passed: no error


def test_no_steps_or_a_non_finite_loss_fails():
    assert not steps_check(0).ok and steps_check(2).ok
    assert losses_check([7.6, 7.5], 2).ok
    assert not losses_check([7.6, math.nan], 2).ok
    assert not losses_check([math.inf, 7.5], 2).ok
    assert not losses_check([7.6], 2).ok  # a step without a logged loss
    assert not losses_check([], 0).ok


# --------------------------------------------------------------------------- what was saved


def rewrite_tensors(path, change) -> None:
    """Rewrite a safetensors file with ``change(tensors)`` applied."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.fixture
def full_output(tiny_model, tmp_path):
    """A full fine-tune's output folder: the tiny model saved again by transformers, with its tokenizer."""
    from transformers import AutoModelForCausalLM

    output = tmp_path / "output"
    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(output)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model / name, output / name)
    return output


def test_saved_weights_pass_when_they_are_the_base_s(full_output, tiny_model):
    assert full_weights_check(full_output, tiny_model).ok
    assert loads_check(full_output).ok


def test_an_empty_tensor_fails_the_weights_check_and_loading(full_output, tiny_model):
    import torch

    rewrite_tensors(full_output / "model.safetensors",
                    lambda tensors: tensors.update({"model.norm.weight": torch.empty(0)}))  # a ZeRO-3 placeholder
    check = full_weights_check(full_output, tiny_model)
    assert not check.ok and "empty: model.norm.weight" in check.detail
    assert not loads_check(full_output).ok


def test_a_missing_tensor_or_no_weights_fail(full_output, tiny_model):
    rewrite_tensors(full_output / "model.safetensors", lambda tensors: tensors.pop("model.norm.weight"))
    assert "missing: model.norm.weight" in full_weights_check(full_output, tiny_model).detail
    (full_output / "model.safetensors").unlink()
    assert not full_weights_check(full_output, tiny_model).ok


@pytest.fixture
def adapter_output(tiny_model, tmp_path):
    output = tmp_path / "adapter"
    random_lora(tiny_model, seed=0, scale=0.1).save_pretrained(output)
    return output


def test_a_whole_adapter_passes(adapter_output, tiny_model):
    check = adapter_check(adapter_output, tiny_model)
    assert check.ok and "r 4" in check.detail


@pytest.mark.parametrize("partition", ["empty", "flat half"])
def test_a_partitioned_adapter_fails(adapter_output, tiny_model, partition):
    """What ZeRO-3 leaves when an adapter is saved without gathering: empty placeholders, or a rank's flat shard."""
    import torch

    def partitioned(tensors):
        key = next(key for key in tensors if "lora_A" in key)
        tensors[key] = torch.empty(0) if partition == "empty" else tensors[key].flatten()[: tensors[key].numel() // 2]

    rewrite_tensors(adapter_output / "adapter_model.safetensors", partitioned)
    check = adapter_check(adapter_output, tiny_model)
    assert not check.ok and "lora_A" in check.detail


def test_no_adapter_fails(tmp_path, tiny_model):
    assert not adapter_check(tmp_path, tiny_model).ok


def test_generation_check_runs_tools_infer_and_fails_without_a_model(full_output, tmp_path):
    from tools.cli import cli
    from tools.demo import tools_runner

    dev = DEV
    run_tools = tools_runner(cli)
    check = generates_check(full_output, dev, tmp_path / "infer" / "dev.json", run_tools)
    assert check.ok and check.detail.startswith("4 of 4")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not generates_check(empty, dev, tmp_path / "infer" / "empty.json", run_tools).ok


# --------------------------------------------------------------------------- the CPU multi-process workarounds


@pytest.fixture
def originals(monkeypatch):
    """The four functions the workarounds replace, as they are; monkeypatch puts them back after the test."""
    import accelerate.state
    import axolotl.cli.config
    import axolotl.utils.trainer
    import deepspeed.runtime.zero.stage_1_and_2 as zero_1_and_2

    found = []
    for target, name in ((axolotl.utils.trainer, "check_cuda_p2p_ib_support"), (axolotl.cli.config, "normalize_config"),
                         (accelerate.state.PartialState, "_prepare_backend"), (zero_1_and_2, "all_gather_dp_groups")):
        function = getattr(target, name)
        monkeypatch.setattr(target, name, function)  # restored after the test, whatever apply() puts there
        found.append((target, name, function))
    return found


def untouched(originals) -> bool:
    return all(getattr(target, name) is function for target, name, function in originals)


@pytest.mark.parametrize("world_size", [None, "1"], ids=["unset", "1"])
def test_workarounds_stay_off_in_one_process(monkeypatch, originals, world_size):
    from training.cpu_multiprocess import apply

    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    assert apply(deepspeed=True) == [] and untouched(originals)


def test_workarounds_stay_off_where_a_gpu_is_visible(monkeypatch, originals):
    import torch

    from training.cpu_multiprocess import apply

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    assert apply(deepspeed=True) == [] and untouched(originals)


def test_workarounds_replace_the_four_blockers_with_several_processes_and_no_gpu(monkeypatch, originals):
    from accelerate.state import DistributedType

    from training.cpu_multiprocess import apply

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert len(apply(deepspeed=True)) == 4
    assert not any(getattr(target, name) is function for target, name, function in originals)
    trainer, config, state, _ = (target for target, _, _ in originals)
    assert trainer.check_cuda_p2p_ib_support() is False  # no CUDA probe
    monkeypatch.setenv("LOCAL_RANK", "0")  # as torchrun sets it: stock accelerate finds no backend on CPU
    assert originals[2][2](state, False) == (None, DistributedType.NO)
    assert state._prepare_backend(state, False) == ("gloo", DistributedType.MULTI_CPU)


# --------------------------------------------------------------------------- the derived config


def test_the_rehearsal_config_is_the_recipe_but_for_the_listed_changes(tiny_model, tmp_path):
    recipe = yaml.safe_load((RECIPES / "exaone_sft.yml").read_text(encoding="utf-8"))
    rehearsal = prepare(RECIPES / "exaone_sft.yml", base_model=tiny_model, workdir=tmp_path)
    config = yaml.safe_load(rehearsal.config_path.read_text(encoding="utf-8"))
    listed = {key for change in rehearsal.changes for key in change.key.split(", ")}
    assert {"bf16", "attn_implementation", "liger_rope", "deepspeed", "sequence_len", "max_steps",
            "plugins"} <= listed
    # every other difference: the dev set's path, and GPU-only switches the recipe leaves unset, now false
    unset_and_off = {key for key, (value, _) in GPU_ONLY.items() if value is False and key not in recipe}
    assert {key for key in recipe.keys() | config.keys() if recipe.get(key) != config.get(key)} <= (
        listed | unset_and_off | {"test_datasets"})
    assert config["plugins"] == [*recipe["plugins"], PROBE, IN_PROCESS_SAVE]
    assert config["sequence_len"] == 256 and config["max_steps"] == 2  # the longest sample row is 250 tokens
    assert config["gradient_accumulation_steps"] == recipe["gradient_accumulation_steps"]  # kept on 2 processes
    deepspeed = json.loads((tmp_path / "deepspeed.json").read_text(encoding="utf-8"))
    shipped = json.loads((REPO / recipe["deepspeed"]).read_text(encoding="utf-8"))
    assert deepspeed == {**shipped, "bf16": {"enabled": False}}
    assert config["deepspeed"] == str(tmp_path / "deepspeed.json")
    assert rehearsal.zero_stage == 3 and rehearsal.mode == "DeepSpeed ZeRO-3"
    assert len((tmp_path / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 8


def test_one_process_carries_the_global_batch_of_two(tiny_model, tmp_path):
    rehearsal = prepare(RECIPES / "exaone_lora.yml", processes=1, base_model=tiny_model, workdir=tmp_path)
    assert rehearsal.config["gradient_accumulation_steps"] == 8 * DEFAULT_PROCESSES
    assert rehearsal.config["lora_dropout"] == 0.0 and rehearsal.zero_stage is None
    assert "gradient_accumulation_steps: 8 → 16" in "\n".join(change.line() for change in rehearsal.changes)


def test_dpo_pairs_give_every_process_as_many_training_rows(tiny_model, tmp_path):
    assert (held_out(0.05, 8), held_out(0.05, 9), held_out(2, 9), held_out(None, 9)) == (1, 1, 2, 0)
    assert pair_count(8, 0.05, 2) == 9 and pair_count(8, 0.05, 6) == 13 and pair_count(8, 0, 2) == 8
    rehearsal = prepare(RECIPES / "exaone_dpo.yml", base_model=tiny_model, workdir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 9  # 8 train after the recipe's 5 % hold-out: 4 per process
    assert all(row["chosen"]["content"] != row["rejected"]["content"] for row in rows)
    assert rehearsal.config["sequence_len"] == 4096  # no packing: the recipe's length stays


def test_more_processes_than_rows_are_refused(tiny_model, tmp_path):
    error = one_line_error(tools_cli("rehearse", RECIPES / "exaone_lora.yml", "--processes", 9,
                                     "--base-model", tiny_model, "--output-dir", tmp_path))
    assert "--processes 9: the sample data gives 8 training rows" in error


def test_a_4bit_base_under_zero3_is_refused_naming_what_to_rehearse_instead(tiny_model, tmp_path):
    error = one_line_error(tools_cli("rehearse", RECIPES / "exaone_qlora.yml", "--deepspeed",
                                     REPO / "deepspeed_configs" / "zero3_bf16.json", "--base-model", tiny_model,
                                     "--output-dir", tmp_path))
    assert "not rehearsed on CPU" in error and "--deepspeed none or deepspeed_configs/zero2.json" in error


def test_one_process_under_deepspeed_is_refused_naming_ddp(tiny_model, tmp_path):
    error = one_line_error(tools_cli("rehearse", RECIPES / "exaone_sft.yml", "--processes", 1,
                                     "--base-model", tiny_model, "--output-dir", tmp_path))
    assert "--processes 1 under DeepSpeed" in error and "add --deepspeed none" in error


def test_an_fsdp_recipe_is_refused(tmp_path):
    recipe = yaml.safe_load((RECIPES / "exaone_sft.yml").read_text(encoding="utf-8"))
    recipe.pop("deepspeed")
    path = tmp_path / "fsdp.yml"
    path.write_text(yaml.safe_dump({**recipe, "fsdp_version": 2, "fsdp_config": {"offload_params": False}}))
    assert "FSDP is not rehearsed" in one_line_error(tools_cli("rehearse", path, "--output-dir", tmp_path / "out"))


def processes_running(text: str) -> list[str]:
    """The command lines of this machine's processes that contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if text in command:
            found.append(command)
    return found


def test_a_run_past_its_timeout_is_stopped_as_a_hang_with_every_rank(tiny_model, tmp_path):
    from training.rehearse import launch

    rehearsal = prepare(RECIPES / "exaone_lora.yml", base_model=tiny_model, workdir=tmp_path)
    with pytest.raises(RehearsalFailed, match="did not end within 3 s"):
        launch(rehearsal, timeout=3)  # the ranks are still importing Axolotl
    assert processes_running(str(rehearsal.config_path)) == []  # torchrun and both ranks are gone
