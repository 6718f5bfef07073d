"""The recipes' own Axolotl plugin: an adapter run's folder keeps the adapter and no second copy of the weights.

What Axolotl does after a LoRA DPO run is reproduced here with PEFT directly: TRL wraps the base model with
``get_peft_model`` (which injects the LoRA layers into the base in place), Axolotl saves the adapter and then
calls ``save_pretrained`` on the base as well. The end-to-end check (the real Axolotl DPO run's folder) is
in tests/test_recipes.py.
"""

from __future__ import annotations

import pytest

from helpers import random_lora

pytest.importorskip("axolotl")

from axolotl.utils.dict import DictDefault  # noqa: E402

from training.axolotl_plugins import AdapterOnlyOutput, stray_peft_model_files  # noqa: E402


def run_cfg(output_dir, adapter="lora"):
    return DictDefault({"adapter": adapter, "output_dir": str(output_dir)})


@pytest.mark.parametrize("shards", [False, True], ids=["one file", "sharded"])
def test_the_lora_injected_base_saved_beside_the_adapter_is_removed(tiny_model, tmp_path, shards):
    peft_model = random_lora(tiny_model, seed=0, scale=0.1)
    peft_model.save_pretrained(tmp_path)                                    # trainer.model.save_pretrained
    peft_model.get_base_model().save_pretrained(tmp_path, **({"max_shard_size": "100KB"} if shards else {}))
    before = sorted(path.name for path in tmp_path.glob("*.safetensors"))
    assert "adapter_model.safetensors" in before and len(before) >= 2
    assert stray_peft_model_files(tmp_path)

    AdapterOnlyOutput().post_train(run_cfg(tmp_path), None)

    assert sorted(path.name for path in tmp_path.glob("*.safetensors")) == ["adapter_model.safetensors"]
    assert not (tmp_path / "model.safetensors.index.json").exists()
    assert (tmp_path / "adapter_config.json").is_file()


def test_a_real_model_file_is_never_touched(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    model.save_pretrained(tmp_path)                       # a full fine-tune's output: plain names, no adapter
    AdapterOnlyOutput().post_train(run_cfg(tmp_path, adapter=None), None)
    AdapterOnlyOutput().post_train(run_cfg(tmp_path), None)  # even if the config says adapter: no adapter file
    assert (tmp_path / "model.safetensors").is_file()

    random_lora(tiny_model, seed=0, scale=0.1).save_pretrained(tmp_path)  # an adapter beside a plain model
    assert stray_peft_model_files(tmp_path) == []
    AdapterOnlyOutput().post_train(run_cfg(tmp_path), None)
    assert (tmp_path / "model.safetensors").is_file()


class Spawned(Exception):
    """Raised by the spy below where datasets would start a spawn pool (a fresh interpreter, seconds on CPU)."""


def spawn_spy(monkeypatch) -> list[str]:
    """The process start methods datasets asks for while saving; asking for one stops the save there."""
    import datasets.arrow_dataset as arrow_dataset

    asked: list[str] = []

    def get_context(method=None):
        asked.append(method)
        raise Spawned(method)

    monkeypatch.setattr(arrow_dataset.mp, "get_context", get_context)
    return asked


def test_a_one_process_save_is_written_in_process(monkeypatch, tmp_path):
    from datasets import Dataset, load_from_disk

    from training.axolotl_plugins import InProcessSave

    monkeypatch.setattr(Dataset, "save_to_disk", Dataset.save_to_disk)  # restored after the test
    asked = spawn_spy(monkeypatch)
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5]], "labels": [[-100, 2, 3], [-100, 5]]})
    with pytest.raises(Spawned):  # what Axolotl's save (num_proc=1) does without the plugin: a spawn pool
        rows.save_to_disk(str(tmp_path / "before"), num_proc=1)
    assert asked == ["spawn"]

    InProcessSave().register({})
    InProcessSave().register({})  # a second registration does not wrap twice
    rows.save_to_disk(str(tmp_path / "after"), num_proc=1)
    assert asked == ["spawn"], "the one-process save still started a pool"
    assert load_from_disk(str(tmp_path / "after")).to_dict() == rows.to_dict()
    with pytest.raises(Spawned):  # more processes asked for: left to datasets
        rows.save_to_disk(str(tmp_path / "two"), num_proc=2)
