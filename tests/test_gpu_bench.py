"""benchmarks/gpu_bench.py: the CPU tiny-shape run end to end (the very code a GPU run executes), the
pieces its numbers rest on (prompt lengths, packed rows, FLOP formulas, peak table, phase failures), the
docs section `make bench` keeps, and — where a CUDA GPU exists — a short run of the default shapes."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO))

from benchmarks import common as benchmarks_common  # noqa: E402
from benchmarks import run_all  # noqa: E402
from benchmarks.gpu import flops, generation_phase, shapes, timing, training, workload  # noqa: E402
from benchmarks.gpu import report as gpu_report  # noqa: E402

SCRIPT = REPO / "benchmarks" / "gpu_bench.py"


def run_bench(out, *args, timeout):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True,
                            text=True, timeout=timeout, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((out / "gpu_bench.json").read_text(encoding="utf-8"))
    return report, (out / "gpu_bench.md").read_text(encoding="utf-8")


def check_structure(report, markdown):
    assert {"device", "versions", "settings", "generation", "training", "phases", "total_seconds"} <= set(report)
    assert {"name", "type", "memory_gib", "peak_bf16_tflops", "peak_source"} <= set(report["device"])
    libraries = {"torch", "cuda", "transformers", "peft", "accelerate", "flash-attn", "vllm", "axolotl"}
    assert libraries <= set(report["versions"])
    assert set(report["training"]["flop_formulas"]) == {"N", "A", "full", "lora", "mfu", "hfu"}
    gen_cases, train_cases = report["generation"]["cases"], report["training"]["cases"]
    assert [case["backend"] for case in gen_cases] == ["hf", "hf", "hf", "hf", "vllm", "vllm"]
    assert [case["case"].split(",")[0] for case in train_cases] == ["LoRA r16 α32", "full fine-tune"]
    for case in gen_cases:
        assert set(case) == set(generation_phase.GEN_FIELDS), case
    for case in train_cases:
        assert set(case) == set(training.TRAIN_FIELDS), case
    statuses = [case["status"] for case in gen_cases + train_cases]
    statuses += [phase["status"] for phase in report["phases"].values()]
    assert all(status == "ok" or status.startswith(("skipped: ", "failed: ", "timeout: ")) for status in statuses)
    for header in ("| item | value |", "| case | status | batch | examples run | prompt tok/s | generated tok/s",
                   "| case | status | shape | params (trainable) | attention | s/step | tokens/s | TFLOP/s | MFU | HFU",
                   "| phase | status | seconds | limit s |"):
        assert header in markdown
    assert report["device"]["name"] in markdown


def test_tiny_cpu_run_measures_every_phase_and_writes_json_and_markdown(tmp_path):
    start = time.perf_counter()
    report, markdown = run_bench(tmp_path, "--tiny", "--device", "cpu", timeout=300)
    check_structure(report, markdown)
    assert report["tiny"] is True and report["device"]["type"] == "cpu"
    assert "NOT GPU numbers" in markdown
    new_tokens = report["generation"]["new_tokens"]
    hf = [case for case in report["generation"]["cases"] if case["backend"] == "hf"]
    for case in hf:
        assert case["status"] == "ok", case
        assert case["generated_tokens"] == case["examples_run"] * new_tokens  # forced length: no early stop
        assert case["projected_seconds_all"] > 0 and case["generated_tokens_per_s"] > 0
    assert hf[0]["batch_size"] == 1 and hf[0]["examples_run"] < report["generation"]["prompts"]  # a subset
    sequential, fixed, budget, best = hf
    assert fixed["batch_size"] == 16 and fixed["max_batch_tokens"] is None and "padded prefill" in fixed["case"]
    assert budget["max_batch_tokens"] == shapes.TINY_PROFILE.max_batch_tokens and budget["batch_size"] is None
    assert budget["batches_total"] > fixed["batches_total"]  # the tiny budget makes smaller batches than 16
    assert best["max_batch_tokens"] >= budget["max_batch_tokens"] and best["batch_size"] is None
    assert "| HF, --max-batch-tokens 512 | ok | ≤ 512 tokens |" in markdown
    vllm = [case for case in report["generation"]["cases"] if case["backend"] == "vllm"]
    assert all(case["status"].startswith("skipped: ") for case in vllm)  # no vLLM here, and no GPU
    lora, full = report["training"]["cases"]
    shape = shapes.TINY_GEN
    for case in (lora, full):
        assert case["status"] == "ok", case
        assert case["tokens_per_s"] > 0 and case["steps_measured"] >= 1 and case["mfu"] == "n/a"
    assert lora["trainable_params"] == shape.lora_params(16) and lora["params"] == shape.params
    assert full["trainable_params"] == full["params"] == shapes.TINY_FULL.params
    assert (report["phases"]["vllm"]["status"].startswith("skipped: "))
    assert time.perf_counter() - start < 120


@pytest.mark.gpu
def test_default_shapes_on_a_gpu_briefly(tmp_path):
    report, markdown = run_bench(tmp_path, "--max-minutes", "3", "--prompts", "48", "--new-tokens", "32",
                                 timeout=420)
    check_structure(report, markdown)
    assert report["device"]["type"] == "cuda" and report["tiny"] is False
    assert report["settings"]["generation_shape"]["hidden"] == 4096
    if report["device"]["memory_gib"] < 40:  # the 7.8B phases need 40 GB: smaller GPUs record OOM failures
        pytest.skip(f"{report['device']['name']} has {report['device']['memory_gib']} GiB: the run completed, "
                    "the 7.8B figures need ≥ 40 GB")
    for default in report["generation"]["cases"][1:3]:  # the old fixed batches and the token budget
        assert default["status"] == "ok", default
        assert default["generated_tokens"] == default["examples_run"] * 32
        assert default["peak_memory_gib"] > 14.5  # the 7.8B bf16 weights alone are 14.6 GiB
    lora, full = report["training"]["cases"]
    assert lora["status"].startswith(("ok", "timeout")), lora
    assert full["status"] == "ok" and full["tokens_per_s"] > 0, full
    if report["device"]["peak_bf16_tflops"]:
        assert 0 < full["mfu"] < 1


def test_prompt_lengths_follow_the_test_split_and_the_seed():
    profile = shapes.DEFAULT_PROFILE
    lengths = workload.prompt_lengths(profile, 408, seed=0)
    assert lengths == workload.prompt_lengths(profile, 408, seed=0)
    assert lengths != workload.prompt_lengths(profile, 408, seed=1)
    stats = workload.percentiles(lengths)
    overhead, per_char = profile.prompt_overhead, profile.tokens_per_char
    assert abs(stats["p50"] - (overhead + per_char * 2109)) < 40
    assert overhead + per_char * 728 <= stats["p0"] and stats["p100"] <= overhead + per_char * 6296
    assert stats["p100"] > overhead + per_char * 5251  # the stratified draw reaches the top percentile


def test_packed_rows_fill_the_sequence_and_restart_positions_per_dialogue():
    profile = shapes.DEFAULT_PROFILE
    for row in workload.packed_rows(profile, vocab=102400, count=3, seed=0):
        assert len(row.input_ids) == len(row.labels) == len(row.position_ids) == sum(row.segments) == 4096
        assert len(row.segments) >= 2
        starts = [i for i, position in enumerate(row.position_ids) if position == 0]
        assert [b - a for a, b in zip(starts, starts[1:] + [4096])] == row.segments
        first = row.segments[0]
        assert row.labels[0] == -100 and row.labels[first - 1] == row.input_ids[first - 1]  # loss on the summary


def test_packed_rows_keep_dialogues_apart():
    """position_ids restarting per dialogue (no attention mask, no cache) = each dialogue on its own."""
    import torch

    model = shapes.build_model(shapes.TINY_GEN, "cpu", torch.float32, "sdpa", seed=0).eval()
    row = workload.packed_rows(shapes.TINY_PROFILE, vocab=shapes.TINY_GEN.vocab, count=1, seed=0)[0]
    ids = torch.tensor([row.input_ids])
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=torch.tensor([row.position_ids]), use_cache=False).logits
        alone, start = [], 0
        for length in row.segments:
            alone.append(model(input_ids=ids[:, start:start + length], use_cache=False).logits)
            start += length
    assert torch.allclose(packed, torch.cat(alone, dim=1), atol=1e-5)


def test_flop_formulas():
    shape = shapes.Shape("toy", layers=2, hidden=8, heads=2, kv_heads=1, mlp=16, vocab=32, positions=64,
                            rope_theta=1e4, tied=False)
    per_layer = 8 * 8 + 2 * 8 * 4 + 8 * 8 + 3 * 8 * 16  # q, k+v (4 wide), o, gate/up/down
    assert shape.block_matmul_params == 2 * per_layer
    assert shape.matmul_params == 2 * per_layer + 32 * 8
    assert shape.params == 2 * per_layer + 2 * 32 * 8 + (2 * 2 + 1) * 8
    lora = 2 * 4 * ((8 + 8) + 2 * (8 + 4) + (8 + 8) + 2 * (8 + 16) + (16 + 8))  # r=4
    assert shape.lora_params(4) == lora
    segments = [10, 6]
    attention = 2 * 2 * 8 * (100 + 36)
    assert flops.attention_flops(shape, segments) == attention
    n, t = shape.matmul_params, 16
    full = 6 * n * t + 3 * attention
    assert flops.training_flops(shape, segments, lora_rank=None, checkpointing=False) == (full, full)
    model, hardware = flops.training_flops(shape, segments, lora_rank=4, checkpointing=True)
    assert model == 4 * n * t + 6 * lora * t + 3 * attention
    assert hardware == model + 2 * (shape.block_matmul_params + lora) * t + attention
    # the real shapes: EXAONE 3.0 7.8B has 7.82 B parameters, EXAONE 3.5 2.4B 2.41 B; LoRA r16 42 M
    assert round(shapes.EXAONE_30_78B.params / 1e9, 2) == 7.82
    assert round(shapes.EXAONE_35_24B.params / 1e9, 2) == 2.41
    assert round(shapes.EXAONE_30_78B.lora_params(16) / 1e6, 1) == 41.9


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA L40S", 362.0), ("NVIDIA L40", 181.0), ("NVIDIA L4", 121.0), ("NVIDIA A10", 125.0),
    ("NVIDIA A10G", None), ("Tesla V100-SXM2-16GB", None),
])
def test_peak_flops_by_device_name(name, peak):
    found, source = shapes.peak_tflops(name)
    assert found == peak
    if peak is None:
        assert "MFU n/a" in source and "--peak-tflops" in source


def test_a_failing_or_overrunning_phase_is_recorded_and_the_run_goes_on(tmp_path):
    report = gpu_report.Report(tmp_path, {"_start": time.perf_counter(), "phases": {}, "generation": {"cases": []},
                                         "training": {"cases": []}})
    report.write = lambda: None
    case = {"status": "not run", "seconds": None}

    def broken(clock):
        raise ValueError("bad\nsecond line")

    def overrun(clock):
        raise timing.PhaseTimeout("hard limit of 1 s")

    assert not timing.run_phase(report, "broken", 10, [case], broken, "cpu")
    assert report.data["phases"]["broken"]["status"] == case["status"] == "failed: ValueError: bad"
    assert not timing.run_phase(report, "slow", 10, [case], overrun, "cpu")
    assert case["status"] == "timeout: hard limit of 1 s"
    assert timing.run_phase(report, "fine", 10, [case], lambda clock: None, "cpu") and case["status"] == "ok"
    assert not timing.run_phase(report, "late", 0, [case], lambda clock: None, "cpu")
    assert case["status"] == "skipped: the --max-minutes budget is spent"
    with pytest.raises(timing.PhaseTimeout):
        with timing.hard_limit(0.2):
            time.sleep(3)


def test_docs_results_block_is_replaced_between_the_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{gpu_report.DOCS_BEGIN}\nold\n{gpu_report.DOCS_END}\nend\n", encoding="utf-8")
    other = tmp_path / "other.md"
    other.write_text("no markers\n", encoding="utf-8")
    assert gpu_report.update_docs("| new |", [doc, other]) == [doc]
    assert doc.read_text(encoding="utf-8") == f"intro\n{gpu_report.DOCS_BEGIN}\n| new |\n{gpu_report.DOCS_END}\nend\n"
    assert other.read_text(encoding="utf-8") == "no markers\n"


def test_the_gpu_results_live_in_one_page_and_survive_make_bench():
    """docs/benchmarks.md holds `make bench`'s report and the GPU results, each between its own markers; no other
    page holds either (a copy of one page inside another is how two pages came to disagree), and writing a
    `make bench` report into the page keeps the GPU results byte for byte."""
    page = REPO / "docs" / "benchmarks.md"
    for begin in (gpu_report.DOCS_BEGIN, run_all.BEGIN):
        assert [doc.name for doc in (REPO / "docs").glob("*.md") if begin in doc.read_text(encoding="utf-8")] == \
            [page.name]
    assert gpu_report.DOCS_FILES == (page,) and run_all.REPORT == page
    text = page.read_text(encoding="utf-8")
    gpu_part = text[text.index(gpu_report.DOCS_BEGIN):text.index(gpu_report.DOCS_END)]
    rewritten = benchmarks_common.replace_marked(text, run_all.BEGIN, run_all.END, "| new | report |")
    assert gpu_part in rewritten and "| new | report |" in rewritten
    assert rewritten.startswith(text[:text.index(run_all.BEGIN)])