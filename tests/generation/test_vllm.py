"""The vLLM backend, ready for its first GPU run: everything that can be checked without a GPU is checked here
(arguments, device mapping, adapters vLLM refuses and the PEFT merge fallback, the context it is given,
decoding parity with the HF backend); the GPU test compares both backends where CUDA and vLLM exist."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from common.errors import UserError
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import PromptBuilder
from generation.batching import BatchLimit, DEFAULT_MAX_BATCH_TOKENS, VLLM_DIALOGUES_PER_CALL
from generation.checkpoints import resolve_checkpoint
from generation.decoding import Decoding, finish_text
from generation.hf import HFEngine
from generation.jobs import Job, prepare_jobs
from generation.loader import load_engine
from generation.options import InferenceOptions
from generation.vllm import (
    VLLMSettings,
    adapter_problems,
    device_env,
    llm_kwargs,
    merge_adapter,
    sampling_kwargs,
    texts_of,
)
from helpers import DEV, REPO, TEST, fake_venv, load_json, one_line_error, random_lora, tools_cli

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.parametrize("device, visible, tp, expected", [
    ("auto", None, 1, {}),
    ("cuda", "0,1", 2, {}),
    ("cuda:1", None, 1, {"CUDA_VISIBLE_DEVICES": "1"}),
    ("cuda:1", "4,6", 1, {"CUDA_VISIBLE_DEVICES": "6"}),  # the N-th of the GPUs already visible
])
def test_device_maps_to_the_visible_gpu(device, visible, tp, expected):
    assert device_env(device, tp, visible) == expected


@pytest.mark.parametrize("device, visible, tp, message", [
    ("cpu", None, 1, "the vllm backend runs on CUDA GPUs"),
    ("gpu", None, 1, "the vllm backend runs on CUDA GPUs"),
    ("cuda:2", "4,6", 1, r"makes only 2 GPU\(s\) visible"),
    ("cuda:1", None, 2, "but --tensor-parallel-size is 2"),
])
def test_device_mistakes_are_refused(device, visible, tp, message):
    with pytest.raises(UserError, match=message):
        device_env(device, tp, visible)


def test_adapters_vllm_cannot_serve_are_named():
    assert adapter_problems({"r": 16, "lora_alpha": 32, "target_modules": ["q_proj"], "bias": "none"}) == []
    problems = adapter_problems({"r": 1024, "modules_to_save": ["lm_head"], "use_dora": True,
                                 "rank_pattern": {"q_proj": 8}, "bias": "lora_only"})
    assert problems == ["modules_to_save ['lm_head']", "DoRA", "per-module rank/alpha patterns", "rank 1024 > 512",
                        "trained biases (lora_only)"]


def test_engine_arguments(tiny_model):
    decoding = Decoding(max_new_tokens=64, num_candidates=3, temperature=0.8, top_p=0.9, seed=7)
    kwargs = llm_kwargs("m", "t", "bfloat16", decoding, VLLMSettings(gpu_memory_utilization=0.8, tensor_parallel_size=2),
                        resolve_checkpoint(tiny_model).context_length, False, lora_rank=20)
    assert kwargs == {"model": "m", "tokenizer": "t", "dtype": "bfloat16", "trust_remote_code": False, "seed": 7,
                      "gpu_memory_utilization": 0.8, "tensor_parallel_size": 2, "max_model_len": 4096,
                      "enable_lora": True, "max_lora_rank": 32}
    job = Job("nikl-1", [1, 2, 3])
    sampled = sampling_kwargs(job, decoding, [361])
    assert sampled["n"] == 3 and sampled["temperature"] == 0.8 and sampled["seed"] == sampling_kwargs(job, decoding, [361])["seed"]
    greedy = sampling_kwargs(job, Decoding(max_new_tokens=9), [361])
    assert greedy == {"n": 1, "max_tokens": 9, "stop_token_ids": [361], "temperature": 0.0, "top_p": 1.0, "seed": None}


def test_decoding_is_the_same_on_both_backends(tiny_model, monkeypatch):
    """Identical token ids give identical strings: the HF engine and vLLM's outputs go through one function."""
    engine = load_engine(resolve_checkpoint(tiny_model), Decoding(max_new_tokens=8))
    tokenizer, stop = engine.tokenizer, engine.stop_ids
    text_ids = tokenizer("SD2100503과 SD2100504는 주말 , 등산 . 이야기를 했다 !", add_special_tokens=False)["input_ids"]
    rows = [text_ids + [stop[0], 5, 6], text_ids, [stop[0]] + text_ids, [tokenizer.pad_token_id] * 3]
    monkeypatch.setattr(HFEngine, "generate_ids", lambda self, prompts, seeds=None: [list(ids) for ids in rows])
    hf = engine.generate([Job(f"j{i}", [1]) for i in range(len(rows))])
    vllm = texts_of([SimpleNamespace(outputs=[SimpleNamespace(token_ids=tuple(ids))]) for ids in rows], tokenizer, stop)
    assert hf == vllm == [[finish_text(tokenizer, ids, stop)] for ids in rows]
    assert hf[0] == hf[1] and hf[2] == [""] and "[PAD]" not in hf[3][0]


def test_an_adapter_vllm_refuses_is_merged_with_the_same_outputs(tiny_model, tmp_path):
    """The merge fallback: an adapter with modules_to_save, merged with PEFT, generates what the adapter does."""
    from transformers import AutoTokenizer

    model = random_lora(tiny_model, seed=3, scale=0.3, target_modules=("q_proj", "v_proj"), modules_to_save=["lm_head"])
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_problems(config) == ["modules_to_save ['lm_head']"]
    merged = merge_adapter(resolve_checkpoint(adapter), tmp_path / "merged", "float32")
    decoding = Decoding(max_new_tokens=10)
    examples = load_nikl(DEV)

    def outputs(ckpt):
        engine = load_engine(resolve_checkpoint(ckpt), decoding)
        return engine.generate(prepare_jobs(examples, PromptBuilder(tokenizer=engine.tokenizer), engine.tokenizer))

    assert outputs(merged) == outputs(adapter) != outputs(tiny_model)


def test_vllm_batches_by_dialogues_per_call_and_ignores_the_token_budget():
    """vLLM schedules its own batches: --batch-size is the dialogues per call, --max-batch-tokens is for hf."""
    assert InferenceOptions(backend="vllm").batch_limit("cuda") == BatchLimit(None, VLLM_DIALOGUES_PER_CALL)
    assert InferenceOptions(backend="vllm", batch_size=64, max_batch_tokens=4096).batch_limit("cuda") == \
        BatchLimit(None, 64)
    # hf: the budget's default depends on the device (a CPU's caches, a GPU's memory)
    assert InferenceOptions().batch_limit("cpu") == BatchLimit(DEFAULT_MAX_BATCH_TOKENS["cpu"], None)
    assert InferenceOptions().batch_limit("cuda:1") == BatchLimit(DEFAULT_MAX_BATCH_TOKENS["gpu"], None)
    assert InferenceOptions(batch_size=8, max_batch_tokens=0).batch_limit("cpu") == BatchLimit(None, 8)
    assert InferenceOptions(max_batch_tokens=4096).batch_limit("cuda") == BatchLimit(4096, None)


def test_vllm_options_need_the_vllm_backend(tiny_model, tmp_path):
    result = tools_cli("infer", "--ckpt", tiny_model, "--input", TEST, "--output", tmp_path / "r.json",
                 "--max-model-len", 1024)
    assert result.exit_code == 1 and "apply only with --backend vllm" in result.output.strip().splitlines()[-1]


def test_inference_options_refuse_mistakes_and_give_vllm_what_was_set():
    """In-process callers get the command line's checks: an unknown backend or dtype, vLLM's settings on hf."""
    with pytest.raises(UserError, match="unknown backend 'tgi'; choose from hf, vllm"):
        InferenceOptions(backend="tgi")
    with pytest.raises(UserError, match="unknown dtype 'int8'"):
        InferenceOptions(dtype="int8")
    with pytest.raises(UserError, match="apply only with --backend vllm"):
        InferenceOptions(gpu_memory_utilization=0.5)
    assert InferenceOptions(backend="vllm", max_model_len=1024).vllm_settings() == VLLMSettings(max_model_len=1024)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_missing_vllm_names_the_extra_and_the_range(tiny_model, tmp_path):
    result = tools_cli("infer", "--ckpt", tiny_model, "--input", TEST, "--output", tmp_path / "r.json", "--backend", "vllm")
    message = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and "vLLM>=0.11.1,<0.33" in message and "--backend hf" in message


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM here (make install-vllm, then run pytest with .venv-vllm/bin/python)")
def test_both_backends_give_the_same_greedy_summaries(tiny_model, tmp_path):
    """The first machine with a GPU and vLLM checks this: 5 dialogues, greedy, same text on both backends."""
    items = (load_json(DEV) + load_json(TEST))[:5]
    data = tmp_path / "five.json"
    data.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    texts = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / f"{backend}.json"
        result = tools_cli("infer", "--no-progress", "--ckpt", tiny_model, "--input", data, "--output", out,
                     "--backend", backend, "--dtype", "float32", "--max-new-tokens", 32)
        assert result.exit_code == 0, result.output
        texts[backend] = [item["output"] for item in load_json(out)]
    assert texts["hf"] == texts["vllm"]


def test_the_vllm_extra_pins_the_checked_vllm_range():
    import tomllib

    from helpers import REPO
    from generation.vllm import VLLM_RANGE

    extra = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]["vllm"]
    assert f"vllm{VLLM_RANGE}" in extra


@pytest.mark.parametrize("script, problem", [
    ("#!/moved/away/bin/python\n", "its interpreter /moved/away/bin/python is missing or not executable"),
    ("not a program\n", "not a program (neither a binary nor a script with a #! line)"),
])
def test_a_moved_or_broken_vllm_environment_is_one_line_naming_the_variable(tmp_path, monkeypatch, script, problem):
    venv = fake_venv(tmp_path, script)
    monkeypatch.setenv("NIKL_VLLM_VENV", str(venv))
    message = one_line_error(tools_cli("infer", "--ckpt", "some/model", "--input", TEST, "--output",
                                       tmp_path / "r.json", "--backend", "vllm"))
    assert f"cannot run {venv}/bin/tools from vLLM's environment (NIKL_VLLM_VENV={venv}): {problem}" in message
    assert "NIKL_RUNNING_IN_VLLM_VENV" not in os.environ


def test_no_vllm_anywhere_names_where_it_looked(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("NIKL_VLLM_VENV", "/nowhere")
    message = one_line_error(tools_cli("infer", "--ckpt", tiny_model, "--input", TEST, "--output", tmp_path / "r.json",
                                       "--backend", "vllm"))
    assert "not installed here, nor in NIKL_VLLM_VENV=/nowhere" in message


class TestMoreWaysIn:
    """Faults beyond the issue's list, held to the same rules: a full or read-only disk under every command
    that writes, Ctrl-C during select-checkpoint, a merged copy of a killed vLLM run."""

    def test_merged_copies_of_killed_vllm_runs_are_removed(self, tmp_path, monkeypatch):
        import tempfile

        from generation.vllm import merged_folder

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        dead = subprocess.Popen(["true"])  # a process id that is gone
        dead.wait()
        stale = tmp_path / f".nikl-merged.partial-{dead.pid}-0badcafe"
        (stale / "weights").mkdir(parents=True)
        live = tmp_path / f".nikl-merged.partial-{os.getppid()}-0badcafe"  # a run still going: kept
        live.mkdir()
        folder = merged_folder()
        assert not stale.exists() and live.exists() and folder.is_dir()
        assert folder.name.startswith(f".nikl-merged.partial-{os.getpid()}-")


def test_backend_vllm_runs_itself_again_in_the_vllm_environment(tmp_path):
    """Without vLLM here but with its environment built, the same command line runs there, said in one line;
    a broken vLLM environment cannot send it round in a loop."""
    import os
    import subprocess

    from helpers import TEST

    venv = tmp_path / "venv-vllm"
    (venv / "bin").mkdir(parents=True)
    seen = tmp_path / "seen.txt"
    fake = venv / "bin" / "tools"  # stands in for the vLLM environment's `tools`: records what it was given
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$NIKL_RUNNING_IN_VLLM_VENV\" \"$@\" > {seen}\n")
    fake.chmod(0o755)
    args = ["infer", "--ckpt", "some/model", "--input", str(TEST), "--output", str(tmp_path / "r.json"),
            "--backend", "vllm", "--gpu-memory-utilization", "0.8"]
    env = {**os.environ, "NIKL_VLLM_VENV": str(venv)}
    result = subprocess.run([str(Path(sys.executable).parent / "tools"), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"running this command with {fake}" in result.stderr
    assert seen.read_text().splitlines() == ["1", *args]

    env["NIKL_RUNNING_IN_VLLM_VENV"] = "1"  # already there, and still no vLLM: the plain error, no second hop
    result = subprocess.run([str(Path(sys.executable).parent / "tools"), *args], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "make install-vllm" in result.stderr, result.stderr
