"""GPU benchmark: EXAONE-3.0-7.8B-shaped generation and training throughput, no download, one command.

``python benchmarks/gpu_bench.py --out bench_out/gpu`` (``make bench-gpu``) on one CUDA GPU, ≤ 8 minutes
on an H100 by default. The models are random-initialised ``LlamaForCausalLM``s of the real shapes (EXAONE
3.x is the Llama architecture under other names), built directly on the GPU: no weights, no download, no
disk (only the vLLM phase writes the random weights to a temporary directory, because vLLM loads from one).
Random weights measure speed as well as trained ones; a random model never emits EOS, so every example
generates exactly ``--new-tokens``.

Phases, each with its own time limit (scaled by ``--max-minutes``), each recording its own failure or
timeout (``failed: …`` / ``timeout: …`` / ``skipped: …``) without losing the others:

1. generation — the 408-dialogue submission: prompts whose token lengths follow the test split's length
   distribution, through the engine ``tools infer`` runs (``generation.hf.HFEngine`` batched by
   ``generation.runner.generate_all``): batch 1 on a length-stratified subset, the token budget
   (``--max-batch-tokens``, the ``tools infer`` default) and the largest token budget that fits (searched
   upward, catching CUDA OOM); each projected to the whole set from the batches it had time for. vLLM
   (``generation.loader.load_engine`` on the vllm backend) too when installed: it needs weights on disk, so
   that phase saves the random model to a temporary directory and runs in a child process with a hard timeout.
2. training — one packed 4096-token row per step as ``recipes/exaone_lora.yml`` trains: PEFT LoRA r16/α32 on
   every linear layer, reentrant gradient checkpointing, bf16, flash_attention_2 when flash-attn is
   installed (else sdpa), dialogues packed with position_ids restarting per dialogue (Axolotl's own packing
   collator when Axolotl is installed); then a full fine-tune step (AdamW) of the EXAONE 3.5 2.4B shape.
3. ``DIR/gpu_bench.json`` (``device``, ``versions``, ``settings``, ``generation``, ``training``, ``phases``)
   and ``DIR/gpu_bench.md`` (the same as markdown tables), rewritten after every phase; ``--docs`` also puts
   the tables in docs/benchmarks.md, between its GPU result markers.

``--tiny --device cpu`` runs the very same code on tiny shapes in seconds (the test suite does). This file
says what is measured (shapes, profiles, cases, time limits) and writes the report; ``gpu_phases.py`` beside
it measures (inputs, FLOPs, the phases).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_model, markdown, replace_marked  # noqa: E402
from benchmarks.gpu_phases import (  # noqa: E402
    CountingTokenizer, best_budget, build_model, case_limit, free_memory, make_jobs, packed_rows, percentiles,
    reset_peak, run_batches, run_phase, save_for_vllm, skip, to_batches, train_phase, vllm_child, vllm_phase)
from common.io import write_text  # noqa: E402
from dataset_builders.synthetic import DIALOGUE_CHARS, QUANTILES, SIZES  # noqa: E402
from generation.batching import DEFAULT_MAX_BATCH_TOKENS, VLLM_DIALOGUES_PER_CALL  # noqa: E402

DOCS_PAGE = REPO / "docs" / "benchmarks.md"  # the one page that holds the GPU results
DOCS_BEGIN = "<!-- gpu_bench:results:begin -->"
DOCS_END = "<!-- gpu_bench:results:end -->"

# An assumption (no EXAONE tokenizer offline): 0.5 EXAONE tokens per character of utterance text — about
# 0.43 for colloquial Korean itself plus 0.07 for each line's `화자SD…: ` prefix (~7 tokens × ~20 lines
# per ~2,100 characters) — and 60 tokens for the system prompt, the chat template and the [Question]
# line. Median test prompt ≈ 1,110 tokens, longest ≈ 3,210. Change it with --tokens-per-char.
TOKENS_PER_CHAR = 0.5
PROMPT_OVERHEAD_TOKENS = 60


@dataclass(frozen=True)
class Shape:
    """A Llama-layout decoder (EXAONE 3.x maps onto it one to one)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int
    positions: int
    rope_theta: float
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer of one block: q, k, v, o, gate, up, down."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return [(self.hidden, q), (self.hidden, kv), (self.hidden, kv), (q, self.hidden),
                (self.hidden, self.mlp), (self.hidden, self.mlp), (self.mlp, self.hidden)]

    @property
    def block_matmul_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.linear_shapes())

    @property
    def matmul_params(self) -> int:
        """N of the FLOP formulas: every weight a token is multiplied by — all blocks plus the LM head
        (the embedding lookup is not a matmul; a tied LM head is)."""
        return self.block_matmul_params + self.vocab * self.hidden

    @property
    def params(self) -> int:
        norms = (2 * self.layers + 1) * self.hidden
        return self.block_matmul_params + self.vocab * self.hidden * (1 if self.tied else 2) + norms

    def lora_params(self, rank: int) -> int:
        return self.layers * sum(rank * (i + o) for i, o in self.linear_shapes())

    def llama_config(self):
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=self.vocab, hidden_size=self.hidden, intermediate_size=self.mlp,
            num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
            head_dim=self.head_dim, max_position_embeddings=self.positions, rope_theta=self.rope_theta,
            rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=self.tied,
            bos_token_id=1, eos_token_id=None, pad_token_id=0,  # no EOS: every row generates max_new_tokens
            use_cache=True,
        )


EXAONE_30_78B = Shape("EXAONE 3.0 7.8B", layers=32, hidden=4096, heads=32, kv_heads=8, mlp=14336, vocab=102400,
                      positions=4096, rope_theta=500000.0, tied=False)
# EXAONE 3.5 2.4B: 32k positions with llama3 rope scaling in the real config; the scaling changes no FLOP.
EXAONE_35_24B = Shape("EXAONE 3.5 2.4B", layers=30, hidden=2560, heads=32, kv_heads=8, mlp=7168, vocab=102400,
                      positions=32768, rope_theta=1000000.0, tied=True)
TINY_GEN = Shape("tiny 7.8B-like", layers=2, hidden=64, heads=4, kv_heads=2, mlp=224, vocab=2048,
                 positions=4096, rope_theta=500000.0, tied=False)
TINY_FULL = Shape("tiny 2.4B-like", layers=2, hidden=48, heads=4, kv_heads=2, mlp=128, vocab=2048,
                  positions=4096, rope_theta=1000000.0, tied=True)


@dataclass(frozen=True)
class Profile:
    """Everything a run measures; ``--tiny`` swaps in small shapes and counts, never other code."""

    gen_shape: Shape
    full_shape: Shape
    prompts: int = SIZES["test"]    # the test split: one submission
    new_tokens: int = 256
    tokens_per_char: float = TOKENS_PER_CHAR
    prompt_overhead: int = PROMPT_OVERHEAD_TOKENS
    seq_len: int = 4096             # recipes: sequence_len 4096, sample_packing, pad_to_sequence_len
    batch1_examples: int = 8        # batch 1 runs on a length-stratified subset of this many prompts
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS["gpu"]  # `tools infer --max-batch-tokens` default on a GPU
    max_batch: int = 512            # the upward budget search stops when a batch would hold this many dialogues
    train_steps: int = 4            # measured steps per training case (after the warm-up steps)
    warmup_steps: int = 1
    lora_rank: int = 16             # recipes/exaone_lora.yml: lora_r 16, lora_alpha 32, lora_dropout 0.05
    lora_alpha: int = 32
    lora_dropout: float = 0.05


DEFAULT_PROFILE = Profile(EXAONE_30_78B, EXAONE_35_24B)
TINY_PROFILE = Profile(TINY_GEN, TINY_FULL, prompts=40, new_tokens=4, tokens_per_char=1 / 64, prompt_overhead=8,
                       seq_len=256, batch1_examples=3, max_batch=64, max_batch_tokens=512, train_steps=2)

# bf16 dense tensor-core peak, TFLOP/s (no sparsity), by torch.cuda.get_device_name(); first match wins.
PEAK_BF16_TFLOPS: list[tuple[str, str, float]] = [
    (r"GH200", "GH200", 989.0),
    (r"H200.*NVL", "H200 NVL", 835.0),
    (r"H200", "H200 SXM", 989.0),
    (r"H100.*NVL", "H100 NVL", 835.0),
    (r"H100.*PCIe", "H100 PCIe", 756.0),
    (r"H100|H800", "H100 SXM", 989.0),
    (r"GB200|B200", "B200", 2250.0),
    (r"A100|A800", "A100", 312.0),
    (r"L40S", "L40S", 362.0),
    (r"L40\b", "L40", 181.0),
    (r"\bL4\b", "L4", 121.0),
    (r"\bA10\b", "A10", 125.0),
    (r"RTX 6000 Ada", "RTX 6000 Ada", 364.0),
    (r"RTX A6000", "RTX A6000", 155.0),
    (r"RTX 4090", "RTX 4090", 165.0),
]

# Seconds per phase when --max-minutes is 8 (the default); every limit scales with --max-minutes. Their sum
# (≈ 6.9 min) plus start-up stays inside 8 minutes even when every phase runs to its limit.
PHASE_LIMITS = {
    "build 7.8B model": 40,
    "hf batch 1": 25,
    "hf token budget": 45,
    "hf best budget": 50,
    "vllm save weights": 45,
    "lora step": 40,
    "full fine-tune step": 40,
    "vllm": 130,
}
DEFAULT_MINUTES = 8.0
PHASES = ("generation", "vllm", "lora", "full")

# The fields of a case, in the JSON report (every case has them all; None until measured).
GEN_FIELDS = ("case", "backend", "status", "batch_size", "max_batch_tokens", "examples_run", "examples_total",
              "batches_run", "batches_total", "prompt_tokens", "generated_tokens", "seconds", "prompt_tokens_per_s",
              "generated_tokens_per_s", "examples_per_s", "projected_seconds_all", "projection",
              "peak_memory_gib", "note")
TRAIN_FIELDS = ("case", "status", "shape", "method", "params", "trainable_params", "attention", "dtype",
                "gradient_checkpointing", "optimizer", "packing", "seq_len", "steps_measured", "dialogues_per_row",
                "seconds_per_step", "tokens_per_s", "model_tflops_per_step", "achieved_tflops", "mfu", "hfu",
                "peak_memory_gib", "note")


def new_case(fields: Sequence[str], **values: Any) -> dict[str, Any]:
    return {**dict.fromkeys(fields), "status": "not run", "note": "", **values}


def generation_cases(profile: Profile, n: int) -> dict[str, dict[str, Any]]:
    """The generation cases of a run of ``n`` prompts, by key, in report order."""
    budget = profile.max_batch_tokens
    default = " (tools infer default on a GPU)" if budget == DEFAULT_MAX_BATCH_TOKENS["gpu"] else ""

    def case(name: str, backend: str, batch_size: int | None, max_batch_tokens: int | None = None):
        return new_case(GEN_FIELDS, case=name, backend=backend, batch_size=batch_size,
                        max_batch_tokens=max_batch_tokens, examples_total=n)

    return {
        "batch1": case("HF, batch 1 (subset, projected)", "hf", 1),
        "budget": case(f"HF, --max-batch-tokens {budget}{default}", "hf", None, budget),
        "best": case("HF, largest --max-batch-tokens that fits", "hf", None),
        "vllm_default": case(f"vLLM, --batch-size {VLLM_DIALOGUES_PER_CALL} (tools infer default)", "vllm",
                             VLLM_DIALOGUES_PER_CALL),
        "vllm_all": case(f"vLLM, all {n} prompts in one call (--batch-size {n})", "vllm", n),
    }


def training_cases(profile: Profile) -> dict[str, dict[str, Any]]:
    """The two training cases, by key, in report order."""
    return {
        "lora": new_case(TRAIN_FIELDS, case=f"LoRA r{profile.lora_rank} α{profile.lora_alpha}, all linear layers",
                         shape=f"{profile.gen_shape.name} (Llama layout)", method="LoRA (PEFT), frozen base"),
        "full": new_case(TRAIN_FIELDS, case="full fine-tune, AdamW",
                         shape=f"{profile.full_shape.name} (Llama layout, tied embeddings)",
                         method="full fine-tune, every weight trained"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "gpu",
                        help="output folder (default bench_out/gpu)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny shapes and counts: the same code in seconds (CPU smoke)")
    parser.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N or cpu (cpu needs --tiny)")
    parser.add_argument("--max-minutes", type=float, default=DEFAULT_MINUTES,
                        help="scale every phase's time limit so all fit in this many minutes "
                             f"(default {DEFAULT_MINUTES:g})")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {','.join(PHASES)} (default: all)")
    parser.add_argument("--prompts", type=int,
                        help=f"generation prompts (default {DEFAULT_PROFILE.prompts}, the test split)")
    parser.add_argument("--new-tokens", type=int, help="new tokens per prompt (default 256)")
    parser.add_argument("--tokens-per-char", type=float,
                        help=f"EXAONE tokens per character of dialogue text (default {TOKENS_PER_CHAR})")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak for MFU when the device is not in the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=Path, nargs="?", const=DOCS_PAGE, metavar="PAGE",
                        help="also write the result tables into PAGE, between its gpu_bench markers "
                             "(default docs/benchmarks.md)")
    parser.add_argument("--vllm-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"--phases: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PHASES)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.vllm_child:
        vllm_child(args.vllm_child)
        return
    if args.docs:
        with_docs_block(args.docs, "")  # a page without the markers is refused now, not after the run
    start = time.perf_counter()
    from common.devices import resolve_device
    from common.errors import UserError

    try:
        device = resolve_device(args.device)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    if device == "cpu" and not args.tiny:
        raise SystemExit("error: the default (EXAONE 7.8B) shapes need a CUDA GPU; add --tiny for the CPU smoke run")
    profile = replace(TINY_PROFILE if args.tiny else DEFAULT_PROFILE, **{key: value for key, value in (
        ("prompts", args.prompts), ("new_tokens", args.new_tokens), ("tokens_per_char", args.tokens_per_char))
        if value is not None})
    if profile.prompts < 1 or profile.new_tokens < 1:
        raise SystemExit("error: --prompts and --new-tokens must be positive")
    phases = set(args.phases.split(","))
    limits = {name: seconds * args.max_minutes / DEFAULT_MINUTES for name, seconds in PHASE_LIMITS.items()}
    budget_end = start + args.max_minutes * 60

    import torch

    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    gen_shape, full_shape = profile.gen_shape, profile.full_shape
    jobs = make_jobs(profile, profile.prompts, args.seed)
    lengths = [len(job.prompt_ids) for job in jobs]
    steps = profile.warmup_steps + profile.train_steps
    lora_rows = packed_rows(profile, gen_shape.vocab, steps, args.seed)
    full_rows = packed_rows(profile, full_shape.vocab, steps, args.seed + 7)
    # packed before any phase clock runs (Axolotl's import is slow); peft too, for the same reason
    lora_packed = to_batches(lora_rows, profile.seq_len) if "lora" in phases else ([], "")
    full_packed = to_batches(full_rows, profile.seq_len) if "full" in phases else ([], "")
    if "lora" in phases:
        import peft  # noqa: F401
    gen, train = generation_cases(profile, len(jobs)), training_cases(profile)
    report = Report(args.out, start, {
        "benchmark": "benchmarks/gpu_bench.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/gpu_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "tiny": args.tiny,
        "device": device_info(device, args.peak_tflops),
        "versions": versions(),
        "settings": {
            "seed": args.seed, "max_minutes": args.max_minutes, "phases": sorted(phases),
            "phase_limits_s": {name: round(value, 1) for name, value in limits.items()},
            "dtype": str(dtype).replace("torch.", ""),
            "generation_shape": asdict(gen_shape), "full_fine_tune_shape": asdict(full_shape),
        },
        "generation": {
            "prompts": len(jobs), "new_tokens": profile.new_tokens,
            "prompt_lengths": {
                "tokens_per_char": profile.tokens_per_char, "overhead_tokens": profile.prompt_overhead,
                "source": "test split characters per dialogue, percentiles "
                          + "/".join(f"{q * 100:g}" for q in QUANTILES) + " = "
                          + "/".join(str(chars) for chars in DIALOGUE_CHARS["test"]),
                "tokens": {**percentiles(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                           "total": sum(lengths)}},
            "engine": "generation.hf.HFEngine via generation.runner.generate_all (tools infer --backend hf); "
                      "sdpa attention (tools infer loads models without attn_implementation); no EOS: every row "
                      f"generates {profile.new_tokens} tokens; a token budget counts them per row",
            "cases": list(gen.values()),
        },
        "training": {
            "seq_len": profile.seq_len,
            "rows": "dev-split-like dialogues (prompt + summary + [|endofturn|]) packed into rows of exactly "
                    f"{profile.seq_len} tokens, position_ids restarting per dialogue, loss on summaries only",
            "step": "one packed row: forward (bf16 autocast on CUDA) + backward + AdamW step; the recipes "
                    "accumulate 8 rows per optimizer step, so the optimizer's share here is an upper bound",
            "cases": list(train.values()),
        },
        "phases": {},
        "notes": ["CPU/tiny smoke run: tiny shapes, NOT GPU numbers"] if args.tiny or not cuda else [],
    })
    report.phase("setup: inputs, packing, imports", "ok", time.perf_counter() - start, None)
    peak = report.data["device"]["peak_bf16_tflops"] if cuda or args.peak_tflops else None

    def limit(name: str) -> float:
        return max(0.0, min(limits[name], budget_end - time.perf_counter()))

    hf_cases = [gen["batch1"], gen["budget"], gen["best"]]
    vllm_cases = [gen["vllm_all"], gen["vllm_default"]]  # the fast case first: it needs the least time
    for wanted, cases in (("generation", hf_cases), ("vllm", vllm_cases), ("lora", [train["lora"]]),
                          ("full", [train["full"]])):
        if wanted not in phases:
            for case in cases:
                case["status"] = "skipped: not in --phases"

    # 1. the 7.8B-shaped model: generation, then saved for vLLM, then the LoRA step on it
    model = None
    if phases & {"generation", "vllm", "lora"}:
        def build(clock) -> Any:
            reset_peak(device)
            return build_model(gen_shape, device, dtype, "sdpa", args.seed)

        name = f"build {gen_shape.name} model"
        model = run_phase(report, name, limit("build 7.8B model"), [], build, device)
        if model is None:
            reason = f"no {gen_shape.name} model ({report.data['phases'][name]['status']})"
            for case in hf_cases + vllm_cases + [train["lora"]]:
                if not case["status"].startswith("skipped"):
                    case["status"] = f"skipped: {reason}"
    if "generation" in phases and model is not None:
        hf_generation(report, model, jobs, profile, gen, device, limit)
    vllm_dir = None
    if "vllm" in phases and report.data["versions"]["vllm"] == "not installed":
        skip(report, "vllm", vllm_cases,
             "vLLM not installed here (make install-vllm; then .venv-vllm/bin/python benchmarks/gpu_bench.py)")
    elif "vllm" in phases and not cuda:
        skip(report, "vllm", vllm_cases, "vLLM needs a CUDA GPU")
    elif "vllm" in phases and model is not None:
        vllm_dir = run_phase(report, "vllm save weights", limit("vllm save weights"), [],
                             lambda clock: save_for_vllm(model, gen_shape), device)
        if vllm_dir is None:
            skip(report, "vllm", vllm_cases, "saving the random weights failed")
    if "lora" in phases and model is not None:
        run_phase(report, "lora step", limit("lora step"), [train["lora"]],
                  lambda clock: train_phase(model, gen_shape, lora_rows, lora_packed, profile, clock, train["lora"],
                                            device, dtype, peak, lora=True), device)
    model = None
    free_memory(device)

    # 2. full fine-tune of the 2.4B shape
    if "full" in phases:
        run_phase(report, "full fine-tune step", limit("full fine-tune step"), [train["full"]],
                  lambda clock: train_phase(None, full_shape, full_rows, full_packed, profile, clock, train["full"],
                                            device, dtype, peak, lora=False, seed=args.seed), device)

    # 3. vLLM last: it wants the whole GPU, in a child process
    if vllm_dir is not None:
        try:
            vllm_limit = limit("vllm")
            run_phase(report, "vllm", vllm_limit, vllm_cases,
                      lambda clock: vllm_phase(vllm_dir, jobs, profile.new_tokens, vllm_limit, vllm_cases, args.out),
                      device)
        finally:
            shutil.rmtree(vllm_dir, ignore_errors=True)

    report.write()
    print(report_markdown(report.data))
    if args.docs:
        write_text(args.docs, with_docs_block(args.docs, docs_block(report.data)))
        print(f"[gpu_bench] wrote the results into {args.docs}", file=sys.stderr)
    print(f"[gpu_bench] wrote {args.out / 'gpu_bench.json'} and {args.out / 'gpu_bench.md'}", file=sys.stderr)


def hf_generation(report: Report, model, jobs, profile: Profile, gen: dict[str, dict[str, Any]], device: str,
                  limit) -> None:
    """The HF cases on ``model`` through ``tools infer``'s engine: batch 1, the default budget, the best budget."""
    from generation.decoding import Decoding
    from generation.hf import HFEngine

    engine = HFEngine(model, CountingTokenizer(), Decoding(max_new_tokens=profile.new_tokens))

    def measure(case: dict[str, Any], max_examples: int | None = None):
        def run(clock) -> None:
            reset_peak(device)
            run_batches(engine.generate, lambda: engine.tokenizer.decoded_tokens, jobs, case_limit(case),
                        profile.new_tokens, clock, case, device, max_examples=max_examples)

        return run

    def best(clock) -> None:  # the budget case ran its longest batch first: did that fit?
        fits = bool(gen["budget"]["examples_run"]) and "out of memory" not in gen["budget"]["note"]
        best_budget(engine, jobs, profile, clock, gen["best"], device, fits)

    run_phase(report, "hf batch 1", limit("hf batch 1"), [gen["batch1"]],
              measure(gen["batch1"], profile.batch1_examples), device)
    run_phase(report, "hf token budget", limit("hf token budget"), [gen["budget"]], measure(gen["budget"]), device)
    run_phase(report, "hf best budget", limit("hf best budget"), [gen["best"]], best, device)


# ------------------------------------------------------------------------------------------------ the report


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    found = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "flash-attn", "vllm", "axolotl"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    found["cuda"] = torch.version.cuda or "none"
    return found


def device_info(device: str, peak_override: float | None) -> dict[str, Any]:
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        name, memory = props.name, round(props.total_memory / 2**30, 1)
        peak, how = next(((tflops, f"{label}: {tflops:g} TFLOP/s bf16 dense")
                          for pattern, label, tflops in PEAK_BF16_TFLOPS
                          if re.search(pattern, name, flags=re.IGNORECASE)),
                         (None, f"{name!r} is not in PEAK_BF16_TFLOPS (benchmarks/gpu_bench.py): MFU n/a; "
                                "pass --peak-tflops or add the device"))
    else:
        name, memory = f"CPU: {cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)", None
        peak, how = None, "CPU: MFU n/a (no bf16 tensor-core peak)"
    if peak_override:
        peak, how = peak_override, f"--peak-tflops {peak_override:g}"
    return {"name": name, "type": "cuda" if device.startswith("cuda") else device, "memory_gib": memory,
            "peak_bf16_tflops": peak, "peak_source": how}


class Report:
    """The JSON report and its markdown, rewritten after every phase so a killed run still leaves what it
    measured."""

    def __init__(self, out: Path, start: float, data: dict[str, Any]):
        self.out, self.start, self.data = out, start, data
        out.mkdir(parents=True, exist_ok=True)

    def phase(self, name: str, status: str, seconds: float, limit: float | None) -> None:
        self.data["phases"][name] = {"status": status, "seconds": round(seconds, 1),
                                     "limit_s": round(limit, 1) if limit is not None else None}
        print(f"[gpu_bench] {name}: {status} ({seconds:.1f} s)", file=sys.stderr, flush=True)
        self.write()

    def write(self) -> None:
        self.data["total_seconds"] = round(time.perf_counter() - self.start, 1)
        (self.out / "gpu_bench.json").write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
        (self.out / "gpu_bench.md").write_text(report_markdown(self.data), encoding="utf-8")


def fmt(value: Any) -> str:
    """Numbers with as many digits as they deserve (1,234 / 12.3 / 1.23 / 0.0123); "–" for none."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    size = abs(value)
    return (f"{value:,.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.2f}" if size >= 1
            else f"{value:.3g}")


def percent(value: Any) -> str:
    return f"{value * 100:.1f} %" if isinstance(value, float) else fmt(value)


def docs_block(report: dict[str, Any]) -> str:
    """The result tables (environment, generation, training, phases) with a heading that says what ran."""
    dev, ver, gen, train = report["device"], report["versions"], report["generation"], report["training"]
    tokens = gen["prompt_lengths"]["tokens"]
    not_installed = "not installed"
    environment = [
        {"item": "device", "value": dev["name"] + (f", {dev['memory_gib']} GiB" if dev.get("memory_gib") else "")},
        {"item": "peak for MFU", "value": dev["peak_source"]},
        {"item": "torch", "value": f"{ver['torch']} " + (f"(CUDA {ver['cuda']})" if ver["cuda"] != "none"
                                                         else "(CPU build)")},
        {"item": "transformers / peft / accelerate",
         "value": f"{ver['transformers']} / {ver['peft']} / {ver['accelerate']}"},
        {"item": "flash-attn",
         "value": ver["flash-attn"] + (" (training uses sdpa)" if ver["flash-attn"] == not_installed else "")},
        {"item": "vLLM", "value": ver["vllm"] + (" (vLLM cases skipped)" if ver["vllm"] == not_installed else "")},
        {"item": "Axolotl", "value": ver["axolotl"]},
        {"item": "run",
         "value": f"`{report['command'].strip()}`, {report['date']}, {report.get('total_seconds')} s in all"},
    ]
    generation = [{
        "case": case["case"], "status": case["status"],
        "batch": fmt(case["batch_size"]) if case["max_batch_tokens"] is None
        else f"≤ {case['max_batch_tokens']:,} tokens",
        "examples run": fmt(case["examples_run"]), "prompt tok/s": fmt(case["prompt_tokens_per_s"]),
        "generated tok/s": fmt(case["generated_tokens_per_s"]), "examples/s": fmt(case["examples_per_s"]),
        f"s for all {gen['prompts']} (projected)": fmt(case["projected_seconds_all"]),
        "peak GiB": fmt(case["peak_memory_gib"]), "note": case["note"] or "",
    } for case in gen["cases"]]
    training = [{
        "case": case["case"], "status": case["status"], "shape": case["shape"],
        "params (trainable)": (f"{case['params'] / 1e9:.2f} B" if (case["params"] or 0) >= 1e8
                               else fmt(case["params"])) + f" ({fmt(case['trainable_params'])})",
        "attention": fmt(case["attention"]), "s/step": fmt(case["seconds_per_step"]),
        "tokens/s": fmt(case["tokens_per_s"]), "TFLOP/s": fmt(case["achieved_tflops"]),
        "MFU": percent(case["mfu"]), "HFU": percent(case["hfu"]), "peak GiB": fmt(case["peak_memory_gib"]),
        "note": case["note"] or "",
    } for case in train["cases"]]
    phases = [{"phase": name, "status": phase["status"], "seconds": f"{phase['seconds']:.1f}",
               "limit s": "–" if phase["limit_s"] is None else f"{phase['limit_s']:.1f}"}
              for name, phase in report["phases"].items()]
    lines = []
    if report["tiny"] or dev["type"] != "cuda":
        lines += ["**CPU tiny-shape smoke numbers — NOT GPU numbers.** They only show that every phase runs "
                  "and what the tables look like; no GPU has measured this benchmark yet.", ""]
    lines += [markdown(environment), "",
              f"Generation: {gen['prompts']} prompts of {tokens['p0']}–{tokens['p100']} tokens (median "
              f"{tokens['p50']}, mean {tokens['mean']}), {gen['new_tokens']} new tokens each.", "",
              markdown(generation), "",
              f"Training: one packed {train['seq_len']}-token row per step (forward + backward + AdamW step).", "",
              markdown(training), "",
              markdown(phases)]
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    lengths = report["generation"]["prompt_lengths"]
    return "\n".join([
        "# GPU benchmark (`benchmarks/gpu_bench.py`)", "",
        docs_block(report), "",
        f"Prompt lengths: {lengths['tokens_per_char']:.4g} tokens per character of dialogue text + "
        f"{lengths['overhead_tokens']} tokens of system prompt, chat template and question (an assumption; see "
        "the script's docstring). MFU and HFU: the FLOP formulas of docs/benchmarks.md.", "",
    ])


def with_docs_block(page: Path, block: str) -> str:
    """The text of ``page`` with ``block`` between its result markers (and nothing else changed)."""
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    new = replace_marked(text, DOCS_BEGIN, DOCS_END, block)
    if new is None:
        raise SystemExit(f"error: {page} has no {DOCS_BEGIN} … {DOCS_END} block to write the tables into")
    return new


if __name__ == "__main__":
    main()
