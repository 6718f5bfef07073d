"""benchmarks/gpu_bench.py run as a user runs it: the CPU tiny-shape run end to end (the very code a GPU run executes)
writes every phase into gpu_bench.json and .md, its parameter formulas agree with the models it builds, and `--docs`
replaces only the GPU block of the real page; where a CUDA GPU exists, a short run of the default shapes."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO

SCRIPT = REPO / "benchmarks" / "gpu_bench.py"
PAGE = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- gpu_bench:results:begin -->", "<!-- gpu_bench:results:end -->"


def run_bench(out, *args, timeout, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *map(str, args)], capture_output=True,
                            text=True, timeout=timeout, env=env, cwd=REPO)
    if not check:
        return result
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((out / "gpu_bench.json").read_text(encoding="utf-8"))
    return report, (out / "gpu_bench.md").read_text(encoding="utf-8")


def check_structure(report, markdown):
    assert {"device", "versions", "settings", "generation", "training", "phases", "total_seconds"} <= set(report)
    assert {"name", "type", "memory_gib", "peak_bf16_tflops", "peak_source"} <= set(report["device"])
    libraries = {"torch", "cuda", "transformers", "peft", "accelerate", "flash-attn", "vllm", "axolotl"}
    assert libraries <= set(report["versions"])
    gen_cases, train_cases = report["generation"]["cases"], report["training"]["cases"]
    assert [case["backend"] for case in gen_cases] == ["hf", "hf", "hf", "vllm", "vllm"]
    assert [case["case"].split(",")[0] for case in train_cases] == ["LoRA r16 α32", "full fine-tune"]
    assert len({frozenset(case) for case in gen_cases}) == len({frozenset(case) for case in train_cases}) == 1
    statuses = [case["status"] for case in gen_cases + train_cases]
    statuses += [phase["status"] for phase in report["phases"].values()]
    assert all(status == "ok" or status.startswith(("skipped: ", "failed: ", "timeout: ")) for status in statuses)
    for header in ("| item | value |", "| case | status | batch | examples run | prompt tok/s | generated tok/s",
                   "| case | status | shape | params (trainable) | attention | s/step | tokens/s | TFLOP/s | MFU | HFU",
                   "| phase | status | seconds | limit s |"):
        assert header in markdown
    assert report["device"]["name"] in markdown


def params(shape, lora_rank=None):
    """The parameters of a Llama-layout shape (or of its LoRA adapters on every linear layer), counted here."""
    head = shape["hidden"] // shape["heads"]
    q, kv = shape["heads"] * head, shape["kv_heads"] * head
    linears = [(shape["hidden"], q), (shape["hidden"], kv), (shape["hidden"], kv), (q, shape["hidden"]),
               (shape["hidden"], shape["mlp"]), (shape["hidden"], shape["mlp"]), (shape["mlp"], shape["hidden"])]
    if lora_rank:
        return shape["layers"] * sum(lora_rank * (i + o) for i, o in linears)
    embeddings = shape["vocab"] * shape["hidden"] * (1 if shape["tied"] else 2)
    return shape["layers"] * sum(i * o for i, o in linears) + embeddings + (2 * shape["layers"] + 1) * shape["hidden"]


@pytest.mark.extended  # a whole benchmark run (~15 s): CI runs it (-m extended)
def test_tiny_cpu_run_measures_every_phase_and_writes_json_markdown_and_the_docs_block(tmp_path):
    page = tmp_path / "benchmarks.md"
    shutil.copy(PAGE, page)
    report, markdown = run_bench(tmp_path / "out", "--tiny", "--device", "cpu", "--docs", page, timeout=300)
    check_structure(report, markdown)
    assert report["tiny"] is True and report["device"]["type"] == "cpu"
    assert "NOT GPU numbers" in markdown

    generation = report["generation"]
    new_tokens = generation["new_tokens"]
    tokens = generation["prompt_lengths"]["tokens"]  # 1/64 token per character + 8: the test split's shape
    assert 8 + 728 / 64 <= tokens["p0"] and abs(tokens["p50"] - (8 + 2109 / 64)) <= 3 and tokens["p100"] <= 8 + 6296 / 64
    hf = [case for case in generation["cases"] if case["backend"] == "hf"]
    for case in hf:
        assert case["status"] == "ok", case
        assert case["generated_tokens"] == case["examples_run"] * new_tokens  # forced length: no early stop
        assert case["projected_seconds_all"] > 0 and case["generated_tokens_per_s"] > 0
    one, budget, best = hf
    assert one["batch_size"] == 1 and one["examples_run"] < generation["prompts"]  # a subset, projected
    assert budget["max_batch_tokens"] == 512 and budget["batch_size"] is None and budget["batches_total"] > 1
    assert best["max_batch_tokens"] > 512 and best["batches_total"] < budget["batches_total"]
    assert best["note"].startswith("search 1024 (")
    assert "| HF, --max-batch-tokens 512 | ok | ≤ 512 tokens |" in markdown
    vllm = [case for case in generation["cases"] if case["backend"] == "vllm"]
    assert all(case["status"].startswith("skipped: ") for case in vllm)  # no vLLM here, and no GPU
    assert report["phases"]["vllm"]["status"].startswith("skipped: ")

    lora, full = report["training"]["cases"]
    for case in (lora, full):
        assert case["status"] == "ok" and case["note"] == "", case
        assert case["tokens_per_s"] > 0 and case["steps_measured"] >= 1 and case["mfu"] == "n/a"
        assert case["dialogues_per_row"] >= 2 and case["packing"].startswith("Axolotl")  # its collator agreed
    shapes = report["settings"]
    assert lora["params"] == params(shapes["generation_shape"])
    assert lora["trainable_params"] == params(shapes["generation_shape"], lora_rank=16)  # counted by PEFT
    assert full["trainable_params"] == full["params"] == params(shapes["full_fine_tune_shape"])

    recorded, written = PAGE.read_text(encoding="utf-8"), page.read_text(encoding="utf-8")
    assert written.startswith(recorded[:recorded.index(BEGIN) + len(BEGIN)] + "\n")
    assert written.endswith("\n" + recorded[recorded.index(END):])
    block = written[written.index(BEGIN) + len(BEGIN):written.index(END)].strip()
    assert block in markdown and "| phase | status | seconds | limit s |" in block


def test_bad_runs_are_refused_before_anything_is_measured(tmp_path):
    page = tmp_path / "notes.md"
    page.write_text("# Notes by hand\n", encoding="utf-8")
    result = run_bench(tmp_path / "out", "--tiny", "--device", "cpu", "--docs", page, timeout=120, check=False)
    assert result.returncode == 1 and f"error: {page} has no {BEGIN} … {END} block" in result.stderr
    assert not (tmp_path / "out").exists() and page.read_text(encoding="utf-8") == "# Notes by hand\n"
    result = run_bench(tmp_path / "out", "--device", "cpu", timeout=120, check=False)
    assert result.returncode == 1 and "the default (EXAONE 7.8B) shapes need a CUDA GPU; add --tiny" in result.stderr
    result = run_bench(tmp_path / "out", "--phases", "generation,nope", timeout=120, check=False)
    assert result.returncode == 2 and "--phases: unknown nope; choose from generation, vllm, lora, full" in result.stderr


def test_the_gpu_results_and_the_cpu_report_live_in_one_page():
    """docs/benchmarks.md holds `make bench`'s report and the GPU results, each between its own markers, apart; no
    other page holds either (a copy of one page inside another is how two pages came to disagree)."""
    text = PAGE.read_text(encoding="utf-8")
    for marker in (BEGIN, END, "<!-- make bench:begin -->", "<!-- make bench:end -->"):
        assert text.count(marker) == 1
        assert [doc.name for doc in PAGE.parent.glob("*.md") if marker in doc.read_text(encoding="utf-8")] == [PAGE.name]
    assert text.index("<!-- make bench:end -->") < text.index(BEGIN) < text.index(END)


@pytest.mark.gpu
def test_default_shapes_on_a_gpu_briefly(tmp_path):
    report, markdown = run_bench(tmp_path, "--max-minutes", "3", "--prompts", "48", "--new-tokens", "32",
                                 timeout=420)
    check_structure(report, markdown)
    assert report["device"]["type"] == "cuda" and report["tiny"] is False
    assert report["settings"]["generation_shape"]["hidden"] == 4096
    assert round(report["training"]["cases"][0]["params"] / 1e9, 2) == 7.82  # EXAONE 3.0 7.8B
    assert round(report["training"]["cases"][1]["params"] / 1e9, 2) == 2.41  # EXAONE 3.5 2.4B
    if report["device"]["memory_gib"] < 40:  # the 7.8B phases need 40 GB: smaller GPUs record OOM failures
        pytest.skip(f"{report['device']['name']} has {report['device']['memory_gib']} GiB: the run completed, "
                    "the 7.8B figures need ≥ 40 GB")
    default = report["generation"]["cases"][1]  # the token budget, tools infer's default
    assert default["status"] == "ok", default
    assert default["generated_tokens"] == default["examples_run"] * 32
    assert default["peak_memory_gib"] > 14.5  # the 7.8B bf16 weights alone are 14.6 GiB
    lora, full = report["training"]["cases"]
    assert lora["status"].startswith(("ok", "timeout")), lora
    assert lora["trainable_params"] == 41943040  # LoRA r16 on every linear layer of the 7.8B shape
    assert full["status"] == "ok" and full["tokens_per_s"] > 0, full
    if report["device"]["peak_bf16_tflops"]:
        assert 0 < full["mfu"] < 1
