"""`tools convert-exaone`: EXAONE 3.x's hub layout → the Llama layout is exact, reversible and refuses bad input.

Every checkpoint here starts in EXAONE's own layout (`exaone.tiny.build_tiny_exaone`: hub config keys and
tensor names, two shards and an index, the hub's tokenizer files) and goes through the real command, as a
user's download does. A reference forward pass written from the architecture (`exaone_reference.py`)
reads the EXAONE-layout tensors; `LlamaForCausalLM` reads the converted directory; they must agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from common.checkpoint_files import config_of
from common.tokenizer import chat_prompt_ids
from helpers import TEST, TRAIN, one_line_error
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import SYSTEM_PROMPTS, user_message
from exaone.convert import staged_directory
from exaone.layout import exaone3_problem
from exaone.tiny import TOKEN_IDS, build_tiny_exaone
from exaone_reference import ExaoneReference
from tools.cli import cli

SHAPES = {"3.0": {}, "3.5": {}, "tied": {"head_dim": 32}}  # tied: also a head_dim ≠ hidden / heads
TOLERANCE = 1e-4
NEW_TOKENS = 16


def tools(*args) -> object:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def convert(*args) -> object:
    result = tools("convert-exaone", "--no-progress", *args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is as fast and steadier on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """shape → (EXAONE-layout checkpoint, its conversion by `tools convert-exaone`). Weights have a larger
    spread than the demo's, so that attention and every RoPE detail move the logits well past TOLERANCE."""
    root = tmp_path_factory.mktemp("exaone")
    made = {}
    for shape, options in SHAPES.items():
        hub = build_tiny_exaone(root / f"hub-{shape}", shape=shape, initializer_range=0.1, **options)
        convert("--model", hub, "--output-dir", root / f"llama-{shape}")
        made[shape] = hub, root / f"llama-{shape}"
    return made


@pytest.fixture(scope="module")
def prompt(checkpoints) -> list[int]:
    """A real prompt: the first training dialogue through the EXAONE chat template (≈ 190 tokens)."""
    from transformers import AutoTokenizer

    example = load_nikl(TRAIN)[0]
    messages = [{"role": "system", "content": SYSTEM_PROMPTS["exaone"]},
                {"role": "user", "content": user_message(example.conversation, example.subject_keyword)}]
    return chat_prompt_ids(AutoTokenizer.from_pretrained(checkpoints["3.0"][1]), messages)


def tensors(directory: Path) -> dict[str, tuple[str, tuple, bytes]]:
    """name → (dtype, shape, raw bytes) of every tensor in a checkpoint directory."""
    found = {}
    for shard in sorted(directory.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as file:
            for name in file.keys():
                tensor = file.get_tensor(name)
                found[name] = (str(tensor.dtype), tuple(tensor.shape), tensor.numpy().tobytes())
    return found


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the tiny checkpoint is EXAONE's own layout


def test_tiny_checkpoint_is_in_exaone_hub_layout(checkpoints):
    hub, _ = checkpoints["3.0"]
    config = load_json(hub / "config.json")
    assert config["model_type"] == "exaone" and config["architectures"] == ["ExaoneForCausalLM"]
    assert {"auto_map", "num_layers", "activation_function", "layer_norm_epsilon", "embed_dropout"} <= set(config)
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"]) == (0, 1, 361)
    assert config["max_position_embeddings"] == 4096 and config["rope_scaling"] is None
    index = load_json(hub / "model.safetensors.index.json")
    assert len(set(index["weight_map"].values())) >= 2
    assert "transformer.h.1.attn.attention.out_proj.weight" in index["weight_map"]
    tokenizer_config = load_json(hub / "tokenizer_config.json")
    assert tokenizer_config["tokenizer_class"] == "GPT2Tokenizer"
    assert "[|endofturn|]" in tokenizer_config["chat_template"]
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        assert (hub / name).is_file(), name
    assert TOKEN_IDS["[|endofturn|]"] == 361 and TOKEN_IDS["[EOS]"] == 2  # a decoy where a conventional EOS would be


# --------------------------------------------------------------------------- exact: logits and greedy tokens


@pytest.mark.parametrize("shape", SHAPES)
def test_converted_llama_matches_the_exaone_reference(shape, checkpoints, prompt):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    hub, converted = checkpoints[shape]
    reference = ExaoneReference(hub)
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    assert isinstance(model, LlamaForCausalLM)
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0]
    expected = reference.logits(prompt)
    assert (logits - expected).abs().max().item() < TOLERANCE

    model.generation_config.eos_token_id = None  # compare NEW_TOKENS argmax steps, whatever they are
    generated = model.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
    assert generated[0, len(prompt):].tolist() == reference.greedy(prompt, NEW_TOKENS)

    if reference.config["rope_scaling"]:  # the comparison can see the scaling: dropping it moves the logits
        scaling = reference.config.pop("rope_scaling")
        assert (reference.logits(prompt) - expected).abs().max().item() > 100 * TOLERANCE
        reference.config["rope_scaling"] = scaling


@pytest.mark.parametrize("shape", SHAPES)
def test_converted_config_is_native_llama(shape, checkpoints):
    hub, converted = checkpoints[shape]
    original, config = load_json(hub / "config.json"), load_json(converted / "config.json")
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert not {"auto_map", "num_layers", "activation_function", "layer_norm_epsilon", "embed_dropout"} & set(config)
    assert (config["num_hidden_layers"], config["hidden_act"], config["rms_norm_eps"]) == (
        original["num_layers"], original["activation_function"], original["layer_norm_epsilon"])
    for key in ("rope_theta", "rope_scaling", "tie_word_embeddings", "torch_dtype", "max_position_embeddings",
                "bos_token_id", "eos_token_id", "pad_token_id"):
        assert config[key] == original[key], key
    assert config.get("head_dim") == original.get("head_dim")
    assert load_json(converted / "generation_config.json")["eos_token_id"] == TOKEN_IDS["[|endofturn|]"]
    assert ("lm_head.weight" in tensors(converted)) == (not original["tie_word_embeddings"])


def test_tokenizer_renders_the_same_prompt_ids(checkpoints):
    from transformers import AutoTokenizer

    hub, converted = checkpoints["3.0"]
    before = AutoTokenizer.from_pretrained(hub, trust_remote_code=False)
    after = AutoTokenizer.from_pretrained(converted)  # no remote code anywhere in the converted directory
    messages = [{"role": "system", "content": SYSTEM_PROMPTS["exaone"]},
                {"role": "user", "content": user_message(load_nikl(TEST)[0].conversation, ["주말"])}]
    assert chat_prompt_ids(after, messages) == chat_prompt_ids(before, messages)
    assert after.eos_token == "[|endofturn|]" and after.eos_token_id == 361 and after.pad_token_id == 0
    assert "auto_map" not in load_json(converted / "tokenizer_config.json")


# --------------------------------------------------------------------------- exact: there and back


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_is_bit_identical(shape, checkpoints, tmp_path):
    hub, converted = checkpoints[shape]
    back = tmp_path / "back"
    convert("--model", converted, "--to", "exaone", "--output-dir", back)
    assert load_json(back / "config.json") == load_json(hub / "config.json")
    assert tensors(back) == tensors(hub)
    assert load_json(back / "model.safetensors.index.json") == load_json(hub / "model.safetensors.index.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        assert (back / name).read_bytes() == (hub / name).read_bytes(), name


# --------------------------------------------------------------------------- refusals: one line each


def edit_config(directory: Path, **changes) -> None:
    config = load_json(directory / "config.json")
    (directory / "config.json").write_text(json.dumps({**config, **changes}), encoding="utf-8")


def add_tensor(directory: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    shard = sorted(directory.glob("*.safetensors"))[0]
    save_file({**load_file(str(shard)), name: torch.zeros(8)}, str(shard), metadata={"format": "pt"})


BROKEN = {
    "EXAONE 4.0": (lambda d: edit_config(d, model_type="exaone4"), "is EXAONE 4.x, which transformers runs natively (no remote code): it needs no conversion"),
    "another model": (lambda d: edit_config(d, model_type="qwen2"), "not an EXAONE 3.x config"),
    "missing shard": (lambda d: (d / "model-00002-of-00002.safetensors").unlink(),
                      "missing shard model-00002-of-00002.safetensors"),
    "unexpected tensor": (lambda d: add_tensor(d, "transformer.h.0.attn.attention.rotary.inv_freq"),
                          "unexpected tensor transformer.h.0.attn.attention.rotary.inv_freq"),
    "shape": (lambda d: edit_config(d, intermediate_size=96), "has shape [128, 64], but config.json implies [96, 64]"),
    "missing tensor": (lambda d: edit_config(d, num_layers=3), "missing tensor transformer.h.2.ln_1.weight"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_refuses_a_broken_checkpoint_with_one_line(case, checkpoints, tmp_path):
    source = shutil.copytree(checkpoints["3.0"][0], tmp_path / "model")
    breaks, message = BROKEN[case]
    breaks(source)
    result = tools("convert-exaone", "--model", source, "--output-dir", tmp_path / "out")
    assert message in one_line_error(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # nothing written, nothing half-written


def test_refuses_a_non_empty_output_without_force(checkpoints, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    hub = checkpoints["3.0"][0]
    assert "exists and is not empty; pass --force" in one_line_error(
        tools("convert-exaone", "--model", hub, "--output-dir", out))
    convert("--model", hub, "--output-dir", out, "--force")
    assert not (out / "old.txt").exists() and (out / "config.json").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # the staging directory is gone


@pytest.mark.parametrize("model, extra, message", [
    ("{tmp}/nope", [], "--model {tmp}/nope: no such directory"),
    # the suite runs with HF_HUB_OFFLINE=1: a hub id cannot be downloaded
    ("LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct", [], "cannot download LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct from the hub"),
    ("{llama}", [], "already in the Llama layout"),
    ("{hub}", ["--revision", "main"], "--revision main: only applies to a hub id"),
    ("{hub}", ["--force", "--output-dir", "{hub}/.."], "--output-dir {hub}/.. contains --model {hub}"),
    ("{hub}", ["--force", "--output-dir", "{hub}"], "--output-dir {hub} is --model {hub}"),
    ("{hub}", ["--output-dir", "{hub}/llama"], "--output-dir {hub}/llama is inside --model {hub}"),
])
def test_refuses_what_it_cannot_convert(model, extra, message, tmp_path, checkpoints):
    hub, converted = checkpoints["3.0"]
    fill = {"tmp": tmp_path, "hub": hub, "llama": converted}
    args = ["--model", model.format(**fill), "--output-dir", tmp_path / "o", *(arg.format(**fill) for arg in extra)]
    assert message.format(**fill) in one_line_error(tools("convert-exaone", *args))


def test_a_failed_conversion_leaves_no_directory(tmp_path):
    with pytest.raises(RuntimeError), staged_directory(tmp_path / "out") as staging:
        (staging / "config.json").write_text("{}")
        raise RuntimeError("crash half way")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- tools infer on an unconverted checkpoint


def test_infer_asks_for_the_conversion(checkpoints, tmp_path):
    hub, converted = checkpoints["3.0"]
    assert "tools convert-exaone" in exaone3_problem(hub, config_of(hub))
    assert exaone3_problem(converted, config_of(converted)) is None
    hub_id = "LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct"
    assert config_of(hub_id) is None and exaone3_problem(hub_id, None) is None  # offline: quietly unknown
    infer = ["infer", "--no-progress", "--input", TEST, "--output", tmp_path / "r.json"]
    message = one_line_error(tools(*infer, "--ckpt", hub))
    assert "EXAONE 3.x checkpoint in its hub layout" in message and f"tools convert-exaone --model {hub}" in message
    adapter = tmp_path / "adapter"  # a LoRA adapter on the unconverted model: its base is what matters
    adapter.mkdir()
    adapter_config = {"base_model_name_or_path": str(hub), "peft_type": "LORA"}
    (adapter / "adapter_config.json").write_text(json.dumps(adapter_config))
    assert "tools convert-exaone" in one_line_error(tools(*infer, "--ckpt", adapter))
    assert not (tmp_path / "r.json").exists()


# --------------------------------------------------------------------------- the commands


@pytest.mark.parametrize("command", ["convert-exaone", "build-tiny-model"])
def test_help_explains_every_option(command):
    result = tools(command, "--help")
    assert result.exit_code == 0 and "Example:" in result.output
    options = [param for param in cli.commands[command].params if isinstance(param, click.Option)]
    assert all(option.help for option in options), [option.name for option in options if not option.help]


def test_build_tiny_model_command_writes_both_layouts(tmp_path):
    result = tools("build-tiny-model", "--layout", "exaone", "--shape", "tied", "--output-dir", tmp_path / "hub")
    assert result.exit_code == 0, result.output
    config = load_json(tmp_path / "hub" / "config.json")
    assert config["model_type"] == "exaone" and config["tie_word_embeddings"] is True
    assert config["rope_scaling"]["rope_type"] == "llama3" and config["max_position_embeddings"] == 32768
    result = tools("build-tiny-model", "--output-dir", tmp_path / "llama")
    assert result.exit_code == 0, result.output
    assert load_json(tmp_path / "llama" / "config.json")["model_type"] == "llama"
    assert load_json(tmp_path / "llama-exaone-layout" / "config.json")["model_type"] == "exaone"
