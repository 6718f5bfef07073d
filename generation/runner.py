"""A whole run: prompts → length-sorted batches by token budget (halved on out-of-memory) → sidecar → the output
file."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from common.errors import UserError
from common.io import write_json, write_jsonl
from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder, words_cut
from generation.batching import BatchLimit, by_length
from generation.jobs import Engine, Job, prepare_jobs
from generation.sidecar import Sidecar


def out_of_memory(error: BaseException) -> str | None:
    """Where memory ran out: ``"GPU"`` for torch's device out-of-memory error, ``"CPU"`` for Python's MemoryError or
    torch's CPU allocator failing — the one case torch raises a plain RuntimeError for, recognised by its message;
    ``None`` for any other error."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return "GPU"
    if isinstance(error, MemoryError) or "DefaultCPUAllocator: can't allocate memory" in str(error):
        return "CPU"
    return None


def generate_all(
    jobs: Sequence[Job],
    generate: Callable[[Sequence[Job]], list[list[str]]],
    *,
    limit: BatchLimit,
    new_tokens: int = 0,
    rows_per_dialogue: int = 1,
    on_batch: Callable[[Sequence[Job], list[list[str]]], None] = lambda jobs, results: None,
    progress: bool = True,
    initial: int = 0,
    total: int | None = None,
) -> BatchLimit:
    """Generate for all jobs, longest prompts first, in batches formed by ``limit`` (see
    :mod:`generation.batching`; ``new_tokens`` and ``rows_per_dialogue`` are what each dialogue adds to a
    batch's tokens besides its prompt); returns the limit it ended with.

    Running out of memory (on the GPU or the CPU) halves the limit and retries the same jobs (the smaller
    limit is kept for the rest of the run); with one dialogue in the batch it is a :class:`UserError`
    naming the dialogue and its prompt length.
    """
    import torch
    from tqdm.auto import tqdm

    ordered = by_length(jobs)
    bar = tqdm(total=total if total is not None else len(ordered), initial=initial, unit="ex",
               desc="infer", disable=not progress, dynamic_ncols=True)
    start = 0
    with bar:
        while start < len(ordered):
            batch = ordered[start:limit.next_batch(ordered, start, new_tokens, rows_per_dialogue)]
            try:
                results = generate(batch)
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:  # the types memory runs out with
                where = out_of_memory(error)
                if where is None:
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                smaller = limit.after_out_of_memory(batch, new_tokens, rows_per_dialogue)
                if smaller is None:
                    raise UserError(f"{where} out of memory even at batch size 1, on dialogue {batch[0].id!r} "
                                    f"({len(batch[0].prompt_ids)} prompt tokens): lower --max-new-tokens or "
                                    "--max-prompt-tokens, or use a smaller --dtype") from None
                limit = smaller
                bar.write(f"{where} out of memory on a batch of {len(batch)} (longest prompt "
                          f"{len(batch[0].prompt_ids)} tokens): retrying with {limit.describe()}")
                continue
            on_batch(batch, results)
            bar.update(len(batch))
            start += len(batch)
    return limit


def prompt_budget(context_length: int | None, max_new_tokens: int, max_prompt_tokens: int | None) -> int | None:
    """The prompt's token budget: ``max_prompt_tokens`` when given, else the model's context minus the new
    tokens — so prompt + summary always fit the positions the model has. Asking for more than fits is a
    :class:`UserError`."""
    if context_length is None:
        return max_prompt_tokens
    if max_prompt_tokens is None:
        if max_new_tokens >= context_length:
            raise UserError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the model's "
                            f"context of {context_length} tokens")
        return context_length - max_new_tokens
    if max_prompt_tokens + max_new_tokens > context_length:
        raise UserError(f"--max-prompt-tokens {max_prompt_tokens} + --max-new-tokens {max_new_tokens} = "
                        f"{max_prompt_tokens + max_new_tokens} tokens do not fit the model's context of "
                        f"{context_length}; lower one of them")
    return max_prompt_tokens


@dataclass
class RunReport:
    total: int
    resumed: int = 0
    generated: int = 0
    truncated: int = 0
    dropped_utterances: int = 0
    cut_words: int = 0  # prompts whose first word alone was longer than the budget, cut
    budget: int | None = None
    seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)  # dialogues per generate call, in order
    limit: BatchLimit | None = None  # what formed the batches at the end (lowered after out-of-memory)
    sidecar: Path | None = None
    # Every example's finished row by id ({"id", "output"} or {"id", "candidates"}): what the output file holds,
    # for a caller that goes on in the same process (checkpoint selection scores them without reading them back).
    results: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def batching(self) -> str:
        """``12 batches of 3–40 dialogues (--max-batch-tokens 65536)``."""
        sizes = self.batch_sizes
        if not sizes:
            return "no batches"
        spread = f"{min(sizes)}–{max(sizes)}" if min(sizes) != max(sizes) else str(sizes[0])
        plural = "es" if len(sizes) != 1 else ""
        return f"{len(sizes)} batch{plural} of {spread} dialogue{'s' if max(sizes) != 1 else ''}" + (
            f" ({self.limit.describe()})" if self.limit else "")

    def summary(self) -> list[str]:
        rate = self.generated / self.seconds if self.seconds > 0 else 0.0
        truncated = f"prompts truncated: {self.truncated}"
        if self.budget is not None:
            truncated += f" (budget {self.budget} tokens"
            truncated += f"; {self.dropped_utterances} utterances dropped from the middle" if self.truncated else ""
            truncated += f"; {words_cut(self.cut_words)}" if self.cut_words else ""
            truncated += ")"
        return [
            f"examples: {self.total} ({self.resumed} resumed from {self.sidecar}, {self.generated} generated)"
            if self.resumed else f"examples: {self.total}",
            f"generation: {self.seconds:.1f} s, {rate:.2f} examples/s, {self.batching()}",
            truncated,
        ]


def examples_digest(examples: Sequence[Example]) -> str:
    """Content hash of the input (not its path): a resume must read the same data."""
    text = json.dumps([example.raw for example in examples], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_header(engine: Engine, builder: PromptBuilder, examples: Sequence[Example]) -> dict[str, Any]:
    return {
        **engine.settings(),
        "decoding": engine.decoding.settings(),
        "prompt": {"system_prompt": builder.system_prompt, "clean": list(builder.clean_rules),
                   "max_prompt_tokens": builder.max_prompt_tokens},
        "input_sha256": examples_digest(examples),
    }


def result_row(example_id: str, texts: list[str], sampling: bool) -> dict[str, Any]:
    return {"id": example_id, "candidates": texts} if sampling else {"id": example_id, "output": texts[0]}


def result_row_check(sampling: bool, per_prompt: int) -> Callable[[dict], str | None]:
    """What a finished row of this run must look like (for reading the sidecar back)."""

    def check(row: dict) -> str | None:
        if sampling:
            texts = row.get("candidates")
            if not (isinstance(texts, list) and len(texts) == per_prompt and all(isinstance(t, str) for t in texts)):
                return f"'candidates' is not a list of {per_prompt} strings"
        elif not isinstance(row.get("output"), str):
            return "'output' is not a string"
        return None

    return check


def write_results(output: Path | str, examples: Sequence[Example], rows: dict[str, dict[str, Any]], sampling: bool) -> None:
    """Candidates: JSONL ``{"id", "candidates"}``. Submission: the input's examples, every field and the
    order kept, ``output`` filled — the file the leaderboard takes."""
    if sampling:
        write_jsonl(output, ({"id": e.id, "candidates": rows[e.id]["candidates"]} for e in examples))
    else:
        write_json(output, [{**example.raw, "output": rows[example.id]["output"]} for example in examples])


def run_to_file(
    engine: Engine,
    examples: Sequence[Example],
    builder: PromptBuilder,
    output: Path | str,
    *,
    limit: BatchLimit,
    restart: bool = False,
    progress: bool = True,
    notify: Callable[[str], None] = lambda message: None,
    announce: str | None = None,
) -> RunReport:
    """Generate for every example not already in the sidecar, then write ``output`` atomically. ``limit`` forms the
    batches (the engine's ``max_new_tokens`` and candidates per dialogue count against its token budget:
    :meth:`generation.options.InferenceOptions.batch_limit`). ``notify`` hears ``announce`` once the sidecar is
    accepted, then about any sidecar line that could not be kept. Where another run could write the same output,
    the caller holds its lock (:func:`generation.sidecar.output_lock`), as :class:`generation.pipeline.Inference`
    does from before loading the model."""
    sampling = engine.decoding.sampling
    # Every prompt first: a budget too small for some dialogue stops the run before a sidecar exists, and the
    # truncation counts cover the resumed examples too, so a resumed run reports what a clean run does.
    jobs = prepare_jobs(examples, builder, engine.tokenizer)
    sidecar = Sidecar(output, run_header(engine, builder, examples),
                      result_row_check(sampling, engine.decoding.per_prompt))
    done = sidecar.open(restart=restart)
    if announce:
        notify(announce)
    for problem in sidecar.problems:
        notify(problem)
    wanted = {e.id for e in examples}
    done = {key: row for key, row in done.items() if key in wanted}
    todo = [job for job in jobs if job.id not in done]
    report = RunReport(total=len(examples), resumed=len(done), generated=len(todo),
                       truncated=sum(job.truncated for job in jobs),
                       dropped_utterances=sum(job.dropped_utterances for job in jobs),
                       cut_words=sum(job.cut_word for job in jobs),
                       budget=builder.max_prompt_tokens, sidecar=sidecar.path)

    def on_batch(jobs: Sequence[Job], results: list[list[str]]) -> None:
        rows = [result_row(job.id, texts, sampling) for job, texts in zip(jobs, results)]
        sidecar.append(rows)
        done.update((row["id"], row) for row in rows)
        report.batch_sizes.append(len(jobs))

    start = time.perf_counter()
    try:
        report.limit = generate_all(todo, engine.generate, limit=limit, new_tokens=engine.decoding.max_new_tokens,
                                    rows_per_dialogue=engine.decoding.per_prompt, on_batch=on_batch,
                                    progress=progress, initial=len(done), total=len(examples))
    except BaseException:  # a full disk, Ctrl-C, an error: keep the sidecar if it holds anything to resume from
        sidecar.remove_unless_it_holds_results()
        raise
    report.seconds = time.perf_counter() - start
    write_results(output, examples, done, sampling)
    sidecar.remove()
    report.results = done
    return report
