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
   ``generation.runner.generate_all``): batch 1 on a length-stratified subset, fixed batches of 16 with the
   padded prefill (``tools infer`` before the token budget), the token budget (``--max-batch-tokens``, the
   ``tools infer`` default) and the largest token budget that fits (searched upward, catching CUDA OOM); each
   projected to the whole set from the batches it had time for. vLLM (``generation.loader.load_engine(...,
   backend="vllm")``) too when installed: it needs weights on disk, so that phase saves the random model to a
   temporary directory and runs in a child process with a hard timeout.
2. training — one packed 4096-token row per step as ``recipes/exaone_lora.yml`` trains: PEFT LoRA r16/α32 on
   every linear layer, reentrant gradient checkpointing, bf16, flash_attention_2 when flash-attn is
   installed (else sdpa), dialogues packed with position_ids restarting per dialogue (Axolotl's own packing
   collator when Axolotl is installed); then a full fine-tune step (AdamW) of the EXAONE 3.5 2.4B shape.
3. ``DIR/gpu_bench.json`` (``device``, ``versions``, ``settings``, ``generation``, ``training``, ``phases``)
   and ``DIR/gpu_bench.md`` (the same as markdown tables); ``--docs`` also puts the tables in
   docs/gpu_benchmarks.md and docs/benchmarks.md.

``--tiny --device cpu`` runs the very same code on tiny shapes in seconds (the test suite does).
FLOP formulas (MFU/HFU): see ``benchmarks/gpu/flops.py`` and docs/gpu_benchmarks.md.

This file parses the options and runs the phases in order; the parts live in ``benchmarks/gpu/``: ``shapes``
(the shapes, the run profiles, the tokens-per-character assumption, the GPU peak table), ``workload`` (prompt
lengths and packed rows), ``flops``, ``timing`` (limits, failures, memory), ``generation_phase``,
``vllm_phase``, ``training`` and ``report`` (JSON, markdown, the docs block).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.gpu import REPO  # noqa: E402
from benchmarks.gpu.generation_phase import (  # noqa: E402
    CountingTokenizer, best_budget_search, case_limit, generation_cases, generation_section, run_batches)
from benchmarks.gpu.report import Report, device_info, docs_block, report_markdown, update_docs, versions  # noqa: E402
from benchmarks.gpu.shapes import DEFAULT_PROFILE, TINY_PROFILE, TOKENS_PER_CHAR, build_model  # noqa: E402
from benchmarks.gpu.timing import (  # noqa: E402
    DEFAULT_MINUTES, PHASE_LIMITS, Clock, free_memory, reset_peak, run_phase, skip)
from benchmarks.gpu.training import full_phase, lora_phase, to_batches, training_cases, training_section  # noqa: E402
from benchmarks.gpu.vllm_phase import save_for_vllm, vllm_child, vllm_phase  # noqa: E402
from benchmarks.gpu.workload import make_jobs, packed_rows  # noqa: E402

PHASE_GROUPS = ("generation", "vllm", "lora", "full")


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
    parser.add_argument("--phases", default=",".join(PHASE_GROUPS),
                        help=f"comma-separated subset of {','.join(PHASE_GROUPS)} (default: all)")
    parser.add_argument("--prompts", type=int,
                        help=f"generation prompts (default {DEFAULT_PROFILE.prompts}, the test split)")
    parser.add_argument("--new-tokens", type=int, help="new tokens per prompt (default 256)")
    parser.add_argument("--tokens-per-char", type=float,
                        help=f"EXAONE tokens per character of dialogue text (default {TOKENS_PER_CHAR})")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak for MFU when the device is not in the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", action="store_true",
                        help="also write the result tables into docs/gpu_benchmarks.md and docs/benchmarks.md")
    parser.add_argument("--vllm-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.phases.split(",")) - set(PHASE_GROUPS)
    if unknown:
        parser.error(f"--phases: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PHASE_GROUPS)}")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; returns its rows (generation and training cases), like every benchmark's main()."""
    args = parse_args(argv)
    if args.vllm_child:
        vllm_child(args.vllm_child)
        return []
    start = time.perf_counter()
    from common.devices import resolve_device
    from common.errors import UserError

    try:
        device = resolve_device(args.device)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    if device == "cpu" and not args.tiny:
        raise SystemExit("error: the default (EXAONE 7.8B) shapes need a CUDA GPU; add --tiny for the CPU smoke run")
    profile = TINY_PROFILE if args.tiny else DEFAULT_PROFILE
    profile = replace(profile, **{key: value for key, value in (
        ("prompts", args.prompts), ("new_tokens", args.new_tokens), ("tokens_per_char", args.tokens_per_char))
        if value is not None})
    if profile.prompts < 1 or profile.new_tokens < 1:
        raise SystemExit("error: --prompts and --new-tokens must be positive")
    groups = set(args.phases.split(","))
    scale = args.max_minutes / DEFAULT_MINUTES
    limits = {name: seconds * scale for name, seconds in PHASE_LIMITS.items()}
    budget_end = start + args.max_minutes * 60

    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    gen_shape, full_shape = profile.gen_shape, profile.full_shape
    jobs = make_jobs(profile, profile.prompts, args.seed)
    lengths = [len(job.prompt_ids) for job in jobs]
    lora_rows = packed_rows(profile, gen_shape.vocab, profile.warmup_steps + profile.train_steps, args.seed)
    full_rows = packed_rows(profile, full_shape.vocab, profile.warmup_steps + profile.train_steps, args.seed + 7)
    # packed before any phase clock runs (Axolotl's import is slow); peft too, for the same reason
    lora_packed = to_batches(lora_rows, profile.seq_len) if "lora" in groups else ([], "")
    full_packed = to_batches(full_rows, profile.seq_len) if "full" in groups else ([], "")
    if "lora" in groups:
        import peft  # noqa: F401
    dev = device_info(device, args.peak_tflops)
    installed = versions()
    vllm_installed = installed["vllm"] != "not installed"

    gen = generation_cases(profile, len(jobs))
    train = training_cases(profile)
    data: dict[str, Any] = {
        "benchmark": "benchmarks/gpu_bench.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/gpu_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "tiny": args.tiny,
        "device": dev,
        "versions": installed,
        "settings": {
            "seed": args.seed, "max_minutes": args.max_minutes, "phases": sorted(groups),
            "phase_limits_s": {name: round(value, 1) for name, value in limits.items()},
            "dtype": str(dtype).replace("torch.", ""),
            "generation_shape": asdict(gen_shape), "full_fine_tune_shape": asdict(full_shape),
        },
        "generation": generation_section(profile, lengths, list(gen.values())),
        "training": training_section(profile, list(train.values())),
        "phases": {},
        "notes": [],
        "_start": start,
    }
    if args.tiny or not device.startswith("cuda"):
        data["notes"].append("CPU/tiny smoke run: tiny shapes, NOT GPU numbers")
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out, data)
    report.phase("setup: inputs, packing, imports", "ok", time.perf_counter() - start, None)
    peak = dev["peak_bf16_tflops"] if device.startswith("cuda") or args.peak_tflops else None

    def limit(name: str) -> float:
        return max(0.0, min(limits[name], budget_end - time.perf_counter()))

    # 1. the 7.8B-shaped model: generation phases, then (optionally) saved for vLLM, then the LoRA step on it
    holder: dict[str, Any] = {}
    gen_hf = [gen["batch1"], gen["fixed"], gen["budget"], gen["best"]]
    vllm_cases = [gen["vllm_all"], gen["vllm_default"]]  # the fast case first: it needs the least time
    for wanted, cases in (("generation", gen_hf), ("vllm", vllm_cases), ("lora", [train["lora"]]),
                          ("full", [train["full"]])):
        if wanted not in groups:
            for case in cases:
                case["status"] = "skipped: not in --phases"
    if groups & {"generation", "vllm", "lora"}:
        build_name = f"build {gen_shape.name} model"

        def build(clock: Clock) -> None:
            reset_peak(device)
            holder["model"] = build_model(gen_shape, device, dtype, "sdpa", args.seed)

        if not run_phase(report, build_name, limit("build 7.8B model"), [], build, device):
            reason = f"no {gen_shape.name} model ({data['phases'][build_name]['status']})"
            for case in gen_hf + vllm_cases + [train["lora"]]:
                if not case["status"].startswith("skipped"):
                    case["status"] = f"skipped: {reason}"

    if "generation" in groups and "model" in holder:
        from generation.decoding import Decoding
        from generation.hf import HFEngine

        tokenizer = CountingTokenizer()
        engine = HFEngine(holder["model"], tokenizer, Decoding(max_new_tokens=profile.new_tokens))

        def counted() -> int:
            return tokenizer.decoded_tokens

        def measure(key: str, **kwargs: Any) -> Callable[[Clock], None]:
            def run(clock: Clock) -> None:
                reset_peak(device)
                run_batches(engine.generate, counted, jobs, case_limit(gen[key]), clock, gen[key], device, **kwargs)

            return run

        def fixed(clock: Clock) -> None:  # the old default: generate prefilled the left-padded batch
            engine.prefill_alone = False
            try:
                measure("fixed")(clock)
            finally:
                engine.prefill_alone = True

        def best(clock: Clock) -> None:
            # the budget case ran its longest batch first: did that fit?
            budget_fits = bool(gen["budget"]["examples_run"]) and "out of memory" not in gen["budget"]["note"]
            best_budget_search(engine, tokenizer, jobs, profile, clock, gen["best"], device, budget_fits)

        run_phase(report, "hf batch 1", limit("hf batch 1"), [gen["batch1"]],
                  measure("batch1", max_examples=profile.batch1_examples), device)
        run_phase(report, "hf fixed batch", limit("hf fixed batch"), [gen["fixed"]], fixed, device)
        run_phase(report, "hf token budget", limit("hf token budget"), [gen["budget"]], measure("budget"), device)
        run_phase(report, "hf best budget", limit("hf best budget"), [gen["best"]], best, device)
        del engine

    vllm_dir: Path | None = None
    if "vllm" in groups and not vllm_installed:
        skip(report, "vllm", vllm_cases, "vLLM not installed here (make install-vllm; then .venv-vllm/bin/python benchmarks/gpu_bench.py)")
    elif "vllm" in groups and not device.startswith("cuda"):
        skip(report, "vllm", vllm_cases, "vLLM needs a CUDA GPU")
    elif "vllm" in groups and "model" in holder:
        vllm_dir = Path(tempfile.mkdtemp(prefix="gpu_bench_vllm_"))

        def save(clock: Clock) -> None:
            save_for_vllm(holder["model"], gen_shape, vllm_dir)

        if not run_phase(report, "vllm save weights", limit("vllm save weights"), [], save, device):
            skip(report, "vllm", vllm_cases, "saving the random weights failed")
            shutil.rmtree(vllm_dir, ignore_errors=True)
            vllm_dir = None

    if "lora" in groups and "model" in holder:
        def lora(clock: Clock) -> None:
            lora_phase(holder.pop("model"), gen_shape, lora_rows, lora_packed, profile, clock, train["lora"], device,
                       peak)

        run_phase(report, "lora step", limit("lora step"), [train["lora"]], lora, device)
    holder.clear()
    free_memory(device)

    # 2. full fine-tune of the 2.4B shape
    if "full" in groups:
        run_phase(report, "full fine-tune step", limit("full fine-tune step"), [train["full"]],
                  lambda clock: full_phase(full_shape, full_rows, full_packed, profile, clock, train["full"], device,
                                           dtype, args.seed, peak), device)

    # 3. vLLM last: it wants the whole GPU, in a child process
    if vllm_dir is not None:
        try:
            vllm_limit = limit("vllm")
            run_phase(report, "vllm", vllm_limit, vllm_cases,
                      lambda clock: vllm_phase(vllm_dir, jobs, profile, vllm_limit, vllm_cases, args.out), device)
        finally:
            shutil.rmtree(vllm_dir, ignore_errors=True)

    report.write()
    public = report.public()
    print(report_markdown(public))
    if args.docs:
        for path in update_docs(docs_block(public)):
            print(f"[gpu_bench] wrote the results into {path.relative_to(REPO)}", file=sys.stderr)
    print(f"[gpu_bench] wrote {args.out / 'gpu_bench.json'} and {args.out / 'gpu_bench.md'}", file=sys.stderr)
    return [{"benchmark": "gpu_bench", **case} for case in public["generation"]["cases"] + public["training"]["cases"]]


if __name__ == "__main__":
    main()
