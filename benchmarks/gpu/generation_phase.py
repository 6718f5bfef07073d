"""Generation: ``tools infer``'s batches (``generation.runner.generate_all`` over an engine) timed batch by
batch and projected to the whole submission, and the search for the largest HF token budget that fits.

The batch loop serves the vLLM child too (``vllm_phase``); this module is named for the phase so that it
does not read as the project's ``generation`` package, which it imports."""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from benchmarks.gpu.shapes import Profile
from generation.batching import DEFAULT_MAX_BATCH_TOKENS, VLLM_DIALOGUES_PER_CALL, BatchLimit, plan_batches
from benchmarks.gpu.timing import Clock, free_memory, peak_gib, reset_peak, sync
from benchmarks.gpu.workload import PROMPT_LENGTH_SOURCE, percentiles

GEN_FIELDS = ("case", "backend", "status", "batch_size", "max_batch_tokens", "examples_run", "examples_total",
              "batches_run", "batches_total", "prompt_tokens", "generated_tokens", "seconds", "prompt_tokens_per_s",
              "generated_tokens_per_s", "examples_per_s", "projected_seconds_all", "projection",
              "peak_memory_gib", "note")


def gen_case(case: str, backend: str, batch_size: int | None, total: int, new_tokens: int,
             max_batch_tokens: int | None = None) -> dict[str, Any]:
    return {**dict.fromkeys(GEN_FIELDS), "case": case, "backend": backend, "status": "not run",
            "batch_size": batch_size, "max_batch_tokens": max_batch_tokens, "examples_total": total, "note": "",
            "_new_tokens": new_tokens}


def case_limit(case: dict[str, Any]) -> BatchLimit:
    """The batching of a case: a token budget (``max_batch_tokens``) or fixed batches of ``batch_size``."""
    return BatchLimit(case["max_batch_tokens"], case["batch_size"])


def generation_cases(profile: Profile, n: int) -> dict[str, dict[str, Any]]:
    """The six generation cases of a run of ``n`` prompts, by key, in report order: one prompt at a time, the
    old fixed batches, the default token budget, the largest token budget that fits; vLLM twice."""
    batch, budget, new = profile.fixed_batch, profile.max_batch_tokens, profile.new_tokens
    default = budget == DEFAULT_MAX_BATCH_TOKENS["gpu"]
    return {
        "batch1": gen_case("HF, batch 1 (subset, projected)", "hf", 1, n, new),
        "fixed": gen_case(f"HF, fixed batch {batch}, padded prefill (the old tools infer default)", "hf", batch, n,
                          new),
        "budget": gen_case(f"HF, --max-batch-tokens {budget}" + (" (tools infer default on a GPU)" if default else ""),
                           "hf", None, n, new, budget),
        "best": gen_case("HF, largest --max-batch-tokens that fits", "hf", None, n, new),
        "vllm_default": gen_case(f"vLLM, --batch-size {VLLM_DIALOGUES_PER_CALL} (tools infer default)", "vllm",
                                 VLLM_DIALOGUES_PER_CALL, n, new),
        "vllm_all": gen_case(f"vLLM, all {n} prompts in one call (--batch-size {n})", "vllm", n, n, new),
    }


def generation_section(profile: Profile, lengths: list[int], cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's ``generation`` section: the prompts (token lengths ``lengths``), the engine, the cases."""
    n = len(lengths)
    return {
        "prompts": n, "new_tokens": profile.new_tokens,
        "prompt_lengths": {"tokens_per_char": profile.tokens_per_char, "overhead_tokens": profile.prompt_overhead,
                           "source": PROMPT_LENGTH_SOURCE,
                           "tokens": {**percentiles(lengths), "mean": round(sum(lengths) / n, 1),
                                      "total": sum(lengths)}},
        "engine": "generation.hf.HFEngine via generation.runner.generate_all (tools infer --backend hf); "
                  "sdpa attention (tools infer loads models without attn_implementation); no EOS: every row "
                  f"generates {profile.new_tokens} tokens; a token budget counts them per row",
        "cases": cases,
    }


class CountingTokenizer:
    """What ``HFEngine`` needs of a tokenizer, for a model that has none: no EOS (a random model must
    generate exactly ``max_new_tokens``), pad id 0, and a ``decode`` that counts the tokens it is given
    and returns "" (a real BPE decode of 256 tokens costs microseconds)."""

    eos_token_id = None
    pad_token_id = 0
    unk_token_id = None
    all_special_tokens: list[str] = []
    model_max_length = None

    def __init__(self) -> None:
        self.decoded_tokens = 0

    def convert_tokens_to_ids(self, token: str):
        return None

    def decode(self, ids, skip_special_tokens: bool = False, **kwargs) -> str:
        self.decoded_tokens += len(ids)
        return ""


def spread_order(count: int) -> list[int]:
    """0 (the longest batch: the memory worst case) first, then indices in van der Corput order, so any
    prefix is spread over the whole length range."""
    order, seen, m = [0], {0}, 1
    while len(order) < count:
        v, denominator, k = 0.0, 1.0, m
        while k:
            denominator *= 2
            v += (k & 1) / denominator
            k >>= 1
        index = int(v * count)
        if index not in seen:
            seen.add(index)
            order.append(index)
        m += 1
    return order


def summarise_gen(case: dict[str, Any], timings: list[tuple[int, int, int, float]], batches_total: int,
                  new_tokens: int) -> None:
    """Fill a case from per-batch (examples, prompt tokens, generated tokens, seconds)."""
    if not timings:
        return
    examples = sum(t[0] for t in timings)
    prompt_tokens = sum(t[1] for t in timings)
    generated = sum(t[2] for t in timings)
    seconds = sum(t[3] for t in timings)
    case.update(examples_run=examples, batches_run=len(timings), batches_total=batches_total,
                prompt_tokens=prompt_tokens, generated_tokens=generated, seconds=round(seconds, 3),
                prompt_tokens_per_s=round(prompt_tokens / seconds, 1),
                generated_tokens_per_s=round(generated / seconds, 1),
                examples_per_s=round(examples / seconds, 3))
    if len(timings) == batches_total:
        case.update(projected_seconds_all=round(seconds, 3), projection="measured: every batch")
    else:
        case.update(projected_seconds_all=round(seconds / len(timings) * batches_total, 3),
                    projection=f"mean of {len(timings)} of {batches_total} length-stratified batches × "
                               f"{batches_total}")
    note = re.sub(r"\s*generated \d+ tokens, not \d+×\d+", "", case["note"] or "")
    if new_tokens and generated != examples * new_tokens:  # a row stopped early: the speed is not comparable
        note += f" generated {generated} tokens, not {examples}×{new_tokens}"
    case["note"] = note.strip()


def run_batches(generate: Callable, generated: Callable[[], int], jobs, limit: BatchLimit, clock: Clock,
                case: dict[str, Any], device: str, *, max_examples: int | None = None,
                done: dict[int, tuple] | None = None, memory: Callable[[], float | None] | None = None,
                on_progress: Callable[[], None] = lambda: None) -> None:
    """Run ``tools infer``'s batches (``generate_all`` over an engine's ``generate``, batched by ``limit``) in a
    length-stratified order until the clock (or ``max_examples``) says stop; ``case`` is filled after every
    batch, so a timeout keeps what ran. ``generated()`` is the running count of generated tokens."""
    from generation.runner import generate_all

    memory = memory or (lambda: peak_gib(device))
    new_tokens = case.get("_new_tokens") or 0
    batches = plan_batches(jobs, limit, new_tokens)
    timings = dict(done or {})
    if timings:
        summarise_gen(case, list(timings.values()), len(batches), new_tokens)
    for index in spread_order(len(batches)):
        if index in timings:
            continue
        if max_examples is not None and sum(t[0] for t in timings.values()) >= max_examples:
            break
        if timings and not clock.allows(max(t[3] for t in timings.values())):
            break
        batch = batches[index]
        before = generated()
        sync(device)
        start = time.perf_counter()
        final = generate_all(batch, generate, limit=limit, new_tokens=new_tokens, progress=False)
        sync(device)
        seconds = time.perf_counter() - start
        if final != limit:
            case["note"] = f"out of memory: generate_all went down to {final.describe()}"
        timings[index] = (len(batch), sum(len(job.prompt_ids) for job in batch), generated() - before, seconds)
        summarise_gen(case, list(timings.values()), len(batches), new_tokens)
        case["peak_memory_gib"] = memory()
        on_progress()


def probe_batch(engine, tokenizer: CountingTokenizer, jobs, limit: BatchLimit, device: str) -> tuple:
    """The first batch ``limit`` forms (the longest prompts) through ``engine.generate`` directly
    (``generate_all`` would halve it on OOM and hide that): the batch's timing, or
    ``torch.cuda.OutOfMemoryError``."""
    batch = plan_batches(jobs, limit, engine.decoding.max_new_tokens)[0]
    before = tokenizer.decoded_tokens
    sync(device)
    start = time.perf_counter()
    engine.generate(batch)
    sync(device)
    return (len(batch), sum(len(job.prompt_ids) for job in batch), tokenizer.decoded_tokens - before,
            time.perf_counter() - start)


def best_budget_search(engine, tokenizer, jobs, profile: Profile, clock: Clock, case: dict[str, Any], device: str,
                       default_fits: bool) -> None:
    """The largest token budget whose first batch (the longest prompts) generates without CUDA OOM: doubling
    from the default budget (halving from it when the default did not fit) until a batch would hold
    ``max_batch`` dialogues or every prompt; then that budget measured like the others, reusing its probe."""
    import torch

    new_tokens = engine.decoding.max_new_tokens
    budget = profile.max_batch_tokens

    def first_batch(tokens: int) -> int:
        return len(plan_batches(jobs, BatchLimit(tokens), new_tokens)[0])

    def room_to_grow(tokens: int) -> bool:
        return first_batch(tokens) < min(profile.max_batch, len(jobs))

    fit: int | None = budget if default_fits else None
    fit_timing: tuple | None = None
    fit_peak: float | None = None
    tried: list[str] = []
    upward = default_fits
    size = budget * 2 if upward else budget // 2
    while size >= 1 and (not upward or room_to_grow(fit or 0)):
        if fit_timing and not clock.allows(fit_timing[3] * 2.5):  # a doubled batch takes longer
            tried.append(f"{size}: no time left")
            break
        reset_peak(device)
        out_of_memory = False
        try:
            timing = probe_batch(engine, tokenizer, jobs, BatchLimit(size), device)
        except torch.cuda.OutOfMemoryError:
            out_of_memory = True
        if out_of_memory:  # outside the except block, so the failed batch's tensors can be freed
            tried.append(f"{size}: OOM")
            free_memory(device)
            if upward:
                break
            size //= 2
            continue
        tried.append(f"{size} ({first_batch(size)} dialogues): fits")
        fit, fit_timing, fit_peak = size, timing, peak_gib(device)
        case.update(max_batch_tokens=fit, note="search " + ", ".join(tried))
        if not upward:
            break
        size *= 2
    case["note"] = "search " + (", ".join(tried) if tried else f"not needed: {fit} holds every prompt")
    if fit is None:
        raise torch.cuda.OutOfMemoryError("not even one dialogue fits")
    case["max_batch_tokens"] = fit
    done = {0: fit_timing} if fit_timing else {}
    reset_peak(device)
    run_batches(engine.generate, lambda: tokenizer.decoded_tokens, jobs, BatchLimit(fit), clock, case, device,
                done=done)
    if fit_peak is not None and device.startswith("cuda"):
        case["peak_memory_gib"] = max(fit_peak, case["peak_memory_gib"] or 0.0)
