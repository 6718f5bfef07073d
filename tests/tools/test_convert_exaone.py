"""`tools convert-exaone`: EXAONE 3.x's hub layout → the Llama layout is exact, reversible and refuses bad input.

Every checkpoint here starts in EXAONE's own layout (`exaone.tiny.build_tiny_exaone`: hub config keys and
tensor names, two shards and an index, the hub's tokenizer files) and goes through the real command, as a
user's download does. A reference forward pass written from the architecture (`exaone_reference.py`)
reads the EXAONE-layout tensors; `LlamaForCausalLM` reads the converted directory; they must agree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import torch
from safetensors import safe_open

from common.checkpoint_files import config_of
from common.env import offline_env
from common.tokenizer import chat_prompt_ids
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import SYSTEM_PROMPTS, user_message
from exaone.convert import staged_directory
from exaone.layout import exaone3_problem
from exaone.tiny import TOKEN_IDS, build_tiny_exaone
from exaone_reference import ExaoneReference
from helpers import (
    TEST,
    TRAIN,
    killed_before,
    listing,
    load_json,
    on_mounted,
    one_line_error,
    snapshot,
    tools_cli,
    tools_cli as tools,
    tools_command,
)
from tools.cli import cli

SHAPES = {"3.0": {}, "3.5": {}, "tied": {"head_dim": 32}}  # tied: also a head_dim ≠ hidden / heads
TOLERANCE = 1e-4
NEW_TOKENS = 16


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


# --------------------------------------------------------------------------- 4. convert-exaone and final writes


@pytest.fixture(scope="module")
def hub_checkpoint(tmp_path_factory) -> Path:
    from exaone.tiny import build_tiny_exaone

    return build_tiny_exaone(tmp_path_factory.mktemp("hub") / "EXAONE-3.0-tiny")


def rewrite_first_shard(model: Path, edit) -> None:
    """Replace the header of ``model``'s first shard by ``edit(header)`` (valid JSON, wrong content)."""
    shard = sorted(model.glob("*.safetensors"))[0]
    raw = shard.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    blob = json.dumps(edit(json.loads(raw[8:8 + length]))).encode()
    shard.write_bytes(len(blob).to_bytes(8, "little") + blob + raw[8 + length:])


def first_tensor(header: dict) -> dict:
    return header[next(name for name in header if name != "__metadata__")]


def with_entry(change):
    def edit(header):
        change(first_tensor(header))
        return header
    return edit


class TestConvertExaone:
    """Issue 22, item 4: kill -9 left .NAME.partial-PID/ forever; a symlinked --output was a traceback;
    a full or read-only disk and wrong safetensors headers or config values were tracebacks; kill -9 in
    build-sft-data's final write left a hidden .NAME.*.tmp."""

    def convert(self, model: Path, output: Path, *extra):
        return tools_cli("convert-exaone", "--model", model, "--output-dir", output, "--no-progress", *extra)

    def test_kill_9_leftovers_are_cleared_by_the_next_run(self, hub_checkpoint, tmp_path):
        output = tmp_path / "converted"
        args = ["convert-exaone", "--model", hub_checkpoint, "--output-dir", output, "--no-progress"]
        killed_before("exaone.convert.write_shard", 2, *args)  # one shard written, then kill -9
        assert [name for name in listing(tmp_path) if "/" not in name][0].startswith(".converted.partial-")
        result = tools_cli(*args)
        assert result.exit_code == 0, result.output
        assert [name for name in listing(tmp_path) if "/" not in name] == ["converted"]

    def test_kill_9_between_the_two_renames_keeps_the_previous_output(self, hub_checkpoint, tmp_path):
        output = tmp_path / "converted"
        args = ["convert-exaone", "--model", hub_checkpoint, "--output-dir", output, "--no-progress", "--force"]
        assert tools_cli(*args).exit_code == 0
        previous = snapshot(output)
        killed_before("pathlib:Path.rename", 2, *args)  # the old output moved aside, the new one not yet in place
        assert not output.exists()
        assert tools_cli(*args[:-1]).exit_code == 1  # refused without --force: the previous output is back …
        assert snapshot(output) == previous
        assert [name for name in listing(tmp_path) if "/" not in name] == ["converted"]  # … and nothing else

    def test_a_symlinked_output_is_written_through(self, hub_checkpoint, tmp_path):
        (tmp_path / "real").mkdir()
        link = tmp_path / "link"
        link.symlink_to("real", target_is_directory=True)
        for extra in ((), ("--force",)):  # into the empty folder, then replacing it
            result = self.convert(hub_checkpoint, link, *extra)
            assert result.exit_code == 0, result.output
        assert link.is_symlink() and (tmp_path / "real" / "config.json").is_file()
        assert [name for name in listing(tmp_path) if "/" not in name] == ["link", "real"]

    def test_a_file_size_limit_is_one_line(self, hub_checkpoint, tmp_path):
        import resource
        import signal as signals

        def limit():  # the kernel refuses writes past 200 kB (EFBIG), as a nearly full disk would
            signals.signal(signals.SIGXFSZ, signals.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

        output = tmp_path / "converted"
        result = subprocess.run([*tools_command(), "convert-exaone", "--model", str(hub_checkpoint), "--output-dir",
                                 str(output), "--no-progress"], preexec_fn=limit, capture_output=True, text=True,
                                env=offline_env())
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            f"Error: cannot write {output}: File too large (a file size limit (ulimit -f) stops it; raise the limit "
            "or write elsewhere)"], result.stderr
        assert listing(tmp_path) == []

    @pytest.mark.parametrize("options, problem", [
        ("size=200k", "No space left on device (the disk is full; free some space or write elsewhere)"),
        ("ro,size=1m", "Read-only file system (the file system is read-only; write elsewhere)"),
    ])
    def test_a_full_or_read_only_disk_is_one_line(self, hub_checkpoint, tmp_path, options, problem):
        disk = tmp_path / "disk"
        disk.mkdir()
        result, left = on_mounted(options, disk, "convert-exaone", "--model", hub_checkpoint, "--output-dir",
                                  disk / "converted", "--no-progress")
        assert result.returncode == 1 and result.stderr.strip().splitlines() == [
            f"Error: cannot write {disk / 'converted'}: {problem}"], result.stderr
        assert left == []

    @pytest.mark.parametrize("edit, problem", [
        (lambda header: [header], "header is a JSON list, not an object"),
        (with_entry(lambda entry: entry.update(dtype="F33")), "unknown dtype 'F33'"),
        (with_entry(lambda entry: entry.update(dtype="F16")), "dtype F16 and shape"),
        (with_entry(lambda entry: entry.update(data_offsets=[*entry["data_offsets"], 0])), "is not two byte offsets"),
        (with_entry(lambda entry: entry.pop("shape")), "no shape"),
        (with_entry(lambda entry: entry.update(shape="64")), "is not a list of sizes"),
    ])
    def test_wrong_safetensors_headers_are_one_line(self, hub_checkpoint, tmp_path, edit, problem):
        model = tmp_path / "model"
        shutil.copytree(hub_checkpoint, model)
        rewrite_first_shard(model, edit)
        before = snapshot(model)
        message = one_line_error(self.convert(model, tmp_path / "out"))
        assert problem in message and "download the checkpoint again" in message
        assert snapshot(model) == before and not (tmp_path / "out").exists()

    @pytest.mark.parametrize("key", ["num_attention_heads", "hidden_size", "num_layers"])
    def test_a_zero_size_in_config_is_one_line(self, hub_checkpoint, tmp_path, key):
        model = tmp_path / "model"
        shutil.copytree(hub_checkpoint, model)
        config = load_json(model / "config.json")
        (model / "config.json").write_text(json.dumps({**config, key: 0}), encoding="utf-8")
        message = one_line_error(self.convert(model, tmp_path / "out"))
        assert f"config.json has {key} 0; it must be a positive number" in message

    def test_kill_9_in_the_final_write_of_build_sft_data(self, tmp_path):
        output = tmp_path / "sft.jsonl"
        args = ["build-sft-data", "--input", TRAIN, "--output", output]
        killed_before("os.fsync", 1, *args)  # every row written to the temporary file, not yet renamed
        assert [name.split(".tmp-")[0] for name in listing(tmp_path)] == [".sft.jsonl"]
        assert tools_cli(*args).exit_code == 0
        assert listing(tmp_path) == ["sft.jsonl"]
