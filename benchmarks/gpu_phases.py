"""How `benchmarks/gpu_bench.py` measures: its inputs, the FLOPs of a training step, phases under time limits, and
the generation, vLLM and training phases. Shapes and profiles are `gpu_bench.py`'s (used here by their fields);
cases are that script's dicts, filled in place as they run, so a phase cut short keeps what it measured."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from dataset_builders.synthetic import DIALOGUE_CHARS, SUMMARY_CHARS, quantile, quantile_draw
from generation.batching import BatchLimit, plan_batches

Case = dict[str, Any]
FIRST_TOKEN_ID = 10  # random prompt tokens avoid the lowest ids (pad 0, bos 1, …)

# ------------------------------------------------------------------------------------------------ inputs


def prompt_lengths(profile, count: int, seed: int) -> list[int]:
    """Token lengths following the test split's characters per dialogue. Stratified (one draw per
    equal-probability stratum, shuffled) unlike the synthetic set's independent draws: the batch-1 subset and a
    short ``--prompts`` run still span the whole range, the longest prompts included."""
    rng = random.Random(seed)
    draws = [(i + rng.random()) / count for i in range(count)]
    rng.shuffle(draws)
    limit, per_char = profile.gen_shape.positions - profile.new_tokens, profile.tokens_per_char
    return [min(limit, profile.prompt_overhead + round(per_char * quantile(DIALOGUE_CHARS["test"], u))) for u in draws]


def make_jobs(profile, count: int, seed: int):
    """``count`` generation jobs: test-split-like lengths, random token ids."""
    from generation.jobs import Job

    rng = random.Random(seed + 1)
    vocab = profile.gen_shape.vocab
    return [Job(f"bench-{i:04d}", [rng.randrange(FIRST_TOKEN_ID, vocab) for _ in range(length)])
            for i, length in enumerate(prompt_lengths(profile, count, seed))]


@dataclass
class PackedRow:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    segments: list[int]  # dialogue lengths in this row (sum = seq_len)


def packed_rows(profile, vocab: int, count: int, seed: int) -> list[PackedRow]:
    """Rows of exactly ``seq_len`` tokens, filled with dev-split-like dialogues (prompt + summary +
    ``[|endofturn|]``) one after another, position ids restarting at 0 per dialogue, loss on the summary
    tokens only. The last dialogue of a row is cut to fill it (Axolotl pads instead: the same compute)."""
    rng = random.Random(seed + 2)
    rows = []
    for _ in range(count):
        row = PackedRow([], [], [], [])
        while len(row.input_ids) < profile.seq_len:
            chars = quantile_draw(rng, DIALOGUE_CHARS["dev"])
            prompt = profile.prompt_overhead + round(profile.tokens_per_char * chars)
            summary = round(profile.tokens_per_char * quantile_draw(rng, SUMMARY_CHARS)) + 1
            length = min(prompt + summary, profile.seq_len - len(row.input_ids))
            tokens = [rng.randrange(FIRST_TOKEN_ID, vocab) for _ in range(length)]
            row.input_ids += tokens
            row.labels += [-100 if i < prompt else token for i, token in enumerate(tokens)]
            row.position_ids += list(range(length))
            row.segments.append(length)
        rows.append(row)
    return rows


def percentiles(values: Sequence[float], points: Sequence[int] = (0, 10, 50, 90, 99, 100)) -> dict[str, float]:
    ordered = sorted(values)
    return {f"p{p}": ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] for p in points}


# ------------------------------------------------------------------------------------------------ FLOPs

def training_flops(shape, segments: Sequence[int], lora_rank: int | None) -> tuple[int, int]:
    """(model FLOPs → MFU, hardware FLOPs → HFU) of one training step with gradient checkpointing on one packed
    row of T tokens whose dialogues have lengths L_i (docs/benchmarks.md#flop-formulas says why):

    * N = matmul parameters (every block's q, k, v, o, gate, up, down, plus the LM head); A = forward attention,
      2 · layers · heads · head_dim · Σ L_i² (causal half; nothing across packed dialogues);
    * full fine-tune 6·N·T + 3·A; LoRA (frozen base: no weight gradients) 4·N·T + 6·N_lora·T + 3·A;
    * hardware FLOPs add what checkpointing recomputes: 2·(N_blocks + N_lora)·T + A."""
    tokens = sum(segments)
    attention = shape.layers * 2 * shape.heads * shape.head_dim * sum(length * length for length in segments)
    lora = shape.lora_params(lora_rank) if lora_rank else 0
    passes = 4 if lora_rank else 6  # a frozen base has no weight gradients
    model = passes * shape.matmul_params * tokens + 6 * lora * tokens + 3 * attention
    return model, model + 2 * (shape.block_matmul_params + lora) * tokens + attention


# ------------------------------------------------------------------------------------------------ phases


class PhaseTimeout(BaseException):
    """A phase ran past its hard limit (a BaseException, so library ``except Exception`` cannot swallow it)."""


class PhaseFailed(Exception):
    """A phase failed for the reason in its message (recorded as ``failed: <message>``)."""


@contextlib.contextmanager
def hard_limit(seconds: float):
    """Raise :class:`PhaseTimeout` in this (main) thread after ``seconds``."""
    if not hasattr(signal, "setitimer") or seconds <= 0:
        yield
        return

    def on_alarm(signum, frame):
        raise PhaseTimeout(f"hard limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Clock:
    """A phase's soft deadline: loops check it before starting a batch or step they expect to overrun."""

    limit: float
    start: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, expected_seconds: float) -> bool:
        return self.elapsed + expected_seconds <= self.limit


def one_line(error: BaseException) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


def failure_status(error: BaseException) -> str:
    import torch

    if isinstance(error, PhaseTimeout):
        return f"timeout: {error}"
    if isinstance(error, PhaseFailed):
        return f"failed: {error}"
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "failed: CUDA out of memory"
    return f"failed: {one_line(error)}"


def run_phase(report, name: str, limit: float, cases: Sequence[Case], fn: Callable[[Clock], Any], device: str) -> Any:
    """Run ``fn`` under a soft ``limit`` (its own loops check the clock) and a hard one (1.25 × + 10 s); any
    failure or timeout becomes the status of this phase (``report.phase``) and of its cases still running.
    Returns what ``fn`` returned, or None when it did not finish."""
    if limit < 1:
        skip(report, name, cases, "the --max-minutes budget is spent")
        return None
    clock = Clock(limit)
    for case in cases:
        case["status"] = "running"
    status, result = "ok", None
    try:
        with hard_limit(limit * 1.25 + 10):
            result = fn(clock)
    except (Exception, PhaseTimeout) as error:  # noqa: BLE001 - every phase records its own failure
        status = failure_status(error)
        if not isinstance(error, PhaseTimeout):
            traceback.print_exc(file=sys.stderr)
    finally:
        free_memory(device)
    for case in cases:
        if case["status"] == "running":
            partial = status != "ok" and (case.get("seconds") or case.get("seconds_per_step"))
            case["status"] = status + (" (partial results)" if partial else "")
    report.phase(name, status, clock.elapsed, limit)
    return result


def skip(report, name: str, cases: Sequence[Case], reason: str) -> None:
    for case in cases:
        case["status"] = f"skipped: {reason}"
    report.phase(name, f"skipped: {reason}", 0.0, None)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**30, 1) if device.startswith("cuda") else None


def free_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def build_model(shape, device: str, dtype, attention: str, seed: int):
    """A random-initialised ``LlamaForCausalLM`` of ``shape`` created directly on ``device`` in ``dtype`` (the
    ``torch.device`` context: no CPU copy, no disk)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(shape.llama_config(), dtype=dtype, attn_implementation=attention)
    if next(model.parameters()).device.type != torch.device(device).type:  # a transformers that ignores it
        model = model.to(device)
    return model


# ------------------------------------------------------------------------------------------------ generation


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


def case_limit(case: Case) -> BatchLimit:
    """The batching of a case: a token budget (``max_batch_tokens``) or fixed batches of ``batch_size``."""
    return BatchLimit(case["max_batch_tokens"], case["batch_size"])


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


def summarise_batches(case: Case, timings: list[tuple[int, int, int, float]], batches_total: int,
                      new_tokens: int) -> None:
    """Fill a case from per-batch (examples, prompt tokens, generated tokens, seconds)."""
    examples, prompt_tokens, generated, seconds = (sum(column) for column in zip(*timings))
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
    if generated != examples * new_tokens:  # a row stopped early: the speed is not comparable
        note += f" generated {generated} tokens, not {examples}×{new_tokens}"
    case["note"] = note.strip()


def run_batches(generate: Callable, generated: Callable[[], int], jobs, limit: BatchLimit, new_tokens: int,
                clock: Clock, case: Case, device: str, *, max_examples: int | None = None,
                done: dict[int, tuple] | None = None, memory: Callable[[], float | None] | None = None,
                on_progress: Callable[[], None] = lambda: None) -> None:
    """Run ``tools infer``'s batches (``generate_all`` over an engine's ``generate``, batched by ``limit``) in a
    length-stratified order until the clock (or ``max_examples``) says stop; ``case`` is filled after every
    batch. ``generated()`` is the running count of generated tokens; ``done``: batches already timed."""
    from generation.runner import generate_all

    memory = memory or (lambda: peak_gib(device))
    batches = plan_batches(jobs, limit, new_tokens)
    timings = dict(done or {})
    if timings:
        summarise_batches(case, list(timings.values()), len(batches), new_tokens)
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
        summarise_batches(case, list(timings.values()), len(batches), new_tokens)
        case["peak_memory_gib"] = memory()
        on_progress()


def best_budget(engine, jobs, profile, clock: Clock, case: Case, device: str, default_fits: bool) -> None:
    """The largest token budget whose first batch (the longest prompts) generates without CUDA OOM: doubling
    from the default budget (halving from it when the default did not fit) until a batch would hold
    ``max_batch`` dialogues or every prompt; then that budget measured like the others, reusing its probe.
    The probes call ``engine.generate`` directly: ``generate_all`` would halve a batch on OOM and hide it."""
    import torch

    tokenizer, new_tokens = engine.tokenizer, profile.new_tokens

    def first_batch(tokens: int) -> list:
        return plan_batches(jobs, BatchLimit(tokens), new_tokens)[0]

    fit = profile.max_batch_tokens if default_fits else None
    fit_timing: tuple | None = None
    fit_peak: float | None = None
    tried: list[str] = []
    upward = default_fits
    size = fit * 2 if upward else profile.max_batch_tokens // 2
    while size >= 1 and (not upward or len(first_batch(fit or 0)) < min(profile.max_batch, len(jobs))):
        if fit_timing and not clock.allows(fit_timing[3] * 2.5):  # a doubled batch takes longer
            tried.append(f"{size}: no time left")
            break
        reset_peak(device)
        batch, before = first_batch(size), tokenizer.decoded_tokens
        try:
            sync(device)
            start = time.perf_counter()
            engine.generate(batch)
            sync(device)
            timing = (len(batch), sum(len(job.prompt_ids) for job in batch), tokenizer.decoded_tokens - before,
                      time.perf_counter() - start)
        except torch.cuda.OutOfMemoryError:
            timing = None
        if timing is None:  # outside the except block, so the failed batch's tensors can be freed
            tried.append(f"{size}: OOM")
            free_memory(device)
            if upward:
                break
            size //= 2
            continue
        tried.append(f"{size} ({len(batch)} dialogues): fits")
        fit, fit_timing, fit_peak = size, timing, peak_gib(device)
        case.update(max_batch_tokens=fit, note="search " + ", ".join(tried))
        if not upward:
            break
        size *= 2
    case["note"] = "search " + (", ".join(tried) if tried else f"not needed: {fit} holds every prompt")
    if fit is None:
        raise torch.cuda.OutOfMemoryError("not even one dialogue fits")
    case["max_batch_tokens"] = fit
    reset_peak(device)
    run_batches(engine.generate, lambda: tokenizer.decoded_tokens, jobs, BatchLimit(fit), new_tokens, clock, case,
                device, done={0: fit_timing} if fit_timing else {})
    if fit_peak is not None and device.startswith("cuda"):
        case["peak_memory_gib"] = max(fit_peak, case["peak_memory_gib"] or 0.0)


# ------------------------------------------------------------------------------------------------ vLLM
# vLLM loads weights from a directory and holds the GPU until its process ends: the random weights are saved to a
# temporary directory, and the vLLM cases run in a child process (``gpu_bench.py --vllm-child SPEC``) killed at
# the phase's limit, passing its results back through a JSON file rewritten after every batch.


def save_for_vllm(model, shape) -> Path:
    """The model and a tokenizer that decodes every id to one word ``t<id>`` and has no EOS (so vLLM decodes
    all ``--new-tokens`` and the words count them), in a new temporary directory (removed on failure)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    directory = Path(tempfile.mkdtemp(prefix="gpu_bench_vllm_"))
    try:
        model.generation_config.eos_token_id = None
        model.save_pretrained(directory)
        backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(shape.vocab)}, unk_token="t0"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=shape.positions).save_pretrained(directory)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def vllm_child(spec_path: str) -> None:
    """``--vllm-child SPEC``: the vLLM cases of SPEC through ``load_engine`` on the vllm backend and
    ``generate_all``, each within SPEC's time budget, SPEC's ``result`` file rewritten after every batch."""
    child_start = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result: dict[str, Any] = {"cases": spec["cases"], "load_seconds": None}

    def write() -> None:
        Path(spec["result"]).write_text(json.dumps(result, indent=2), encoding="utf-8")

    import torch

    from generation.checkpoints import resolve_checkpoint
    from generation.decoding import Decoding
    from generation.jobs import Job
    from generation.loader import load_engine
    from generation.options import InferenceOptions

    engine = load_engine(resolve_checkpoint(spec["model"]), Decoding(max_new_tokens=spec["new_tokens"]),
                         InferenceOptions(backend="vllm", device="cuda", dtype="bfloat16"))
    result["load_seconds"] = round(time.perf_counter() - child_start, 1)
    write()
    jobs = [Job(job_id, ids) for job_id, ids in zip(spec["ids"], spec["prompts"])]
    engine.generate(jobs[:2])  # warm-up
    words = [0]

    def generate(batch):
        results = engine.generate(batch)
        words[0] += sum(len(candidates[0].split()) for candidates in results)  # one word per token
        return results

    def device_memory() -> float:
        free, total = torch.cuda.mem_get_info()
        return round((total - free) / 2**30, 1)

    for case in result["cases"]:
        clock = Clock(spec["budget_s"] - (time.perf_counter() - child_start))
        case["status"] = "running"
        run_batches(generate, lambda: words[0], jobs, case_limit(case), spec["new_tokens"], clock, case, "cuda",
                    memory=device_memory, on_progress=write)
        case["status"] = "ok"
        write()


def vllm_phase(model_dir: Path, jobs, new_tokens: int, limit: float, cases: list[Case], out: Path) -> None:
    """Run :func:`vllm_child` in its own process group, killed at ``limit``; copy back what it measured."""
    result_file, spec_path = model_dir / "vllm_result.json", model_dir / "vllm_spec.json"
    result_file.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({
        "model": str(model_dir), "new_tokens": new_tokens, "ids": [job.id for job in jobs],
        "prompts": [job.prompt_ids for job in jobs], "result": str(result_file), "budget_s": max(1.0, limit - 10),
        "cases": [{**case, "status": "not run"} for case in cases]}), encoding="utf-8")
    log = out / "vllm_child.log"
    status, timed_out = "ok", False
    with open(log, "w", encoding="utf-8") as log_file:
        child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("gpu_bench.py")), "--vllm-child",
                                  str(spec_path)], cwd=Path(__file__).parent.parent, stdout=log_file,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = child.wait(timeout=limit)
            if code != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or [""]
                status = f"exit code {code} ({tail[0][:200]}; see {log.name})"
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the child and the engine processes vLLM started
            child.wait()
            status, timed_out = f"hard limit of {limit:.0f} s", True
    try:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # never written, or cut by the kill
        result = {"cases": [], "load_seconds": None}
    for case, row in zip(cases, result["cases"]):
        case.update({key: value for key, value in row.items() if key in case and key != "case"})
        case["note"] = (case["note"] + f" start-up + vLLM engine load {result.get('load_seconds')} s, not in the time; "
                        "memory = all in use on the device (vLLM reserves 90 % up front)").strip()
    for case in cases:
        if case["status"] in ("running", "not run"):
            prefix = "timeout: " if timed_out else "failed: "
            case["status"] = prefix + (status if status != "ok" else "no result") + (
                " (partial results)" if case.get("seconds") else "")
    if timed_out:
        raise PhaseTimeout(status)
    if status != "ok":
        raise PhaseFailed(status)


# ------------------------------------------------------------------------------------------------ training


def training_attention(device: str) -> tuple[str, str]:
    """flash_attention_2 when flash-attn is usable (the recipes' choice), else sdpa — and why."""
    if not device.startswith("cuda"):
        return "sdpa", "sdpa (CPU)"
    try:
        from transformers.utils import is_flash_attn_2_available

        if is_flash_attn_2_available():
            return "flash_attention_2", "flash_attention_2"
    except Exception:  # noqa: BLE001 - an old transformers: treat as unavailable
        pass
    return "sdpa", "sdpa (flash-attn not installed; the recipes ask for flash_attention_2)"


def to_batches(rows: list[PackedRow], seq_len: int) -> tuple[list[dict[str, Any]], str]:
    """Model inputs (CPU tensors) for each row — input_ids, labels, position_ids; no attention_mask, which is
    what lets flash-attn/sdpa keep dialogues apart — built by Axolotl's sample-packing collator when Axolotl
    is installed (and checked equal to the rows), else by hand; and which of the two. Done before the phases:
    importing Axolotl takes seconds."""
    import torch

    by_hand = [{"input_ids": torch.tensor([row.input_ids]), "labels": torch.tensor([row.labels]),
                "position_ids": torch.tensor([row.position_ids])} for row in rows]
    try:
        from axolotl.utils.collators.batching import V2BatchSamplerDataCollatorForSeq2Seq
    except Exception as error:  # noqa: BLE001 - not installed, or broken: pack by hand
        if isinstance(error, ImportError):
            return by_hand, "by hand (Axolotl not installed)"
        return by_hand, f"by hand (Axolotl's collator did not import: {one_line(error)})"
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    # all the collator needs of a tokenizer is ``pad``: the rows are token ids already
    pad_only = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1},
                                                                                   unk_token="[UNK]")),
                                       pad_token="[PAD]", unk_token="[UNK]", padding_side="right")
    collator = V2BatchSamplerDataCollatorForSeq2Seq(tokenizer=pad_only, padding=True, pad_to_multiple_of=seq_len,
                                                    return_tensors="pt")
    packed = []
    for row, expected in zip(rows, by_hand):
        features, start = [], 0
        for length in row.segments:
            part = slice(start, start + length)
            features.append({"input_ids": row.input_ids[part], "labels": row.labels[part],
                             "position_ids": row.position_ids[part]})
            start += length
        batch = collator([features])
        batch = {key: batch[key] for key in ("input_ids", "labels", "position_ids")}  # Axolotl drops the mask
        for key in batch:
            if not torch.equal(batch[key].long(), expected[key]):
                raise AssertionError(f"Axolotl's collator packed {key} differently from the expected rows")
        packed.append(batch)
    return packed, "Axolotl V2BatchSamplerDataCollatorForSeq2Seq (attention_mask dropped, as Axolotl does)"


def train_phase(model, shape, rows: list[PackedRow], packed: tuple[list, str], profile, clock: Clock, case: Case,
                device: str, dtype, peak: float | None, *, lora: bool, seed: int = 0) -> None:
    """Training steps on one packed row each, with gradient checkpointing and AdamW: with ``lora``,
    ``recipes/exaone_lora.yml``'s PEFT LoRA on every linear layer of ``model``; else a full fine-tune of a new
    model of ``shape`` (every weight trained, in ``dtype`` as the recipes load it). Warm-up steps, then measured
    steps, ``case`` updated after every measured step. Checkpointing is as the recipe the step mirrors: reentrant
    with LoRA (``exaone_lora.yml``: LoRA + ZeRO-3 fails non-reentrant, docs/rehearse.md), non-reentrant for the
    full fine-tune (``exaone_sft.yml``)."""
    import torch

    reentrant = lora
    attention, attention_note = training_attention(device)
    case.update(attention=attention_note, dtype=str(dtype).replace("torch.", ""), params=shape.params,
                gradient_checkpointing="reentrant" if reentrant else "non-reentrant", seq_len=profile.seq_len,
                optimizer="AdamW (fused)" if device.startswith("cuda") else "AdamW",
                dialogues_per_row=round(sum(len(row.segments) for row in rows) / len(rows), 2))
    if lora:
        from peft import LoraConfig, get_peft_model

        model.set_attn_implementation(attention)
    else:
        reset_peak(device)
        model = build_model(shape, device, dtype, attention, seed)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    if lora:
        model = get_peft_model(model, LoraConfig(r=profile.lora_rank, lora_alpha=profile.lora_alpha,
                                                 lora_dropout=profile.lora_dropout, target_modules="all-linear",
                                                 bias="none", task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    case["trainable_params"] = sum(p.numel() for p in trainable)
    expected = shape.lora_params(profile.lora_rank) if lora else shape.params
    if case["trainable_params"] != expected:
        case["note"] = f"{'LoRA ' if lora else ''}params {case['trainable_params']} ≠ formula {expected}"
    optimizer = torch.optim.AdamW(trainable, lr=2e-4 if lora else 2e-5, fused=device.startswith("cuda") or None)
    batches = [{key: value.to(device) for key, value in batch.items()} for batch in packed[0]]
    case["packing"] = packed[1]
    if lora:
        reset_peak(device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda")
                else contextlib.nullcontext())
    model.train()
    times: list[float] = []
    model_flops = hardware_flops = tokens = 0
    for step in range(profile.warmup_steps + profile.train_steps):
        if times and not clock.allows(max(times) * 1.2):
            case["note"] = (case["note"] + f" time limit: {len(times)} of {profile.train_steps} steps").strip()
            break
        index = step % len(batches)
        sync(device)
        start = time.perf_counter()
        with autocast:
            loss = model(**batches[index]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        seconds = time.perf_counter() - start
        if not math.isfinite(loss.item()):
            case["note"] = (case["note"] + " non-finite loss").strip()
        if step < profile.warmup_steps:
            continue
        times.append(seconds)
        row_model, row_hardware = training_flops(shape, rows[index].segments, profile.lora_rank if lora else None)
        model_flops += row_model
        hardware_flops += row_hardware
        tokens += len(rows[index].input_ids)
        total = sum(times)
        case.update(steps_measured=len(times), seconds_per_step=round(total / len(times), 3),
                    tokens_per_s=round(tokens / total, 1),
                    model_tflops_per_step=round(model_flops / len(times) / 1e12, 4),
                    achieved_tflops=round(model_flops / total / 1e12, 4),
                    mfu=round(model_flops / total / (peak * 1e12), 3) if peak else "n/a",
                    hfu=round(hardware_flops / total / (peak * 1e12), 3) if peak else "n/a",
                    peak_memory_gib=peak_gib(device))
