"""How dialogues are grouped into generate calls: a token budget over prompts sorted by length.

The prompts are sorted longest first. A batch takes the next dialogues while its rows × (its longest prompt +
``max_new_tokens``) — the tokens its KV cache holds at the last step — stays within ``max_tokens``, and while
it has at most ``max_dialogues`` dialogues when that cap is set; a dialogue sampled ``num_candidates`` times
counts that many rows. So a batch of 3,000-token prompts is small and a batch of 200-token prompts large, and
the memory a batch needs is about the same for every batch of a run. The first dialogue of a batch always goes
in, so a single dialogue over the budget still runs (alone).

Running out of memory halves the budget — to half of what the failed batch held — and retries the same
dialogues; without a budget (``max_tokens=None``) the dialogue cap is halved instead. The smaller limit is
kept for the rest of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from generation.jobs import Job

# rows × (longest prompt + max_new_tokens) per generate call on the hf backend, by device: measured by
# benchmarks/infer_throughput.py. On a CPU the budget is the working set of a decoding step — the KV cache
# every row reads and `DynamicCache` copies each step —, and batches much over 16k tokens spill out of the
# processor's caches and lose to one dialogue at a time (65,536 did on the synthetic dev and mix sets,
# 262,144 on dev, test and mix); 8k–16k gain on every set, and 8,192 also keeps the 4 candidates of a
# 2,000-token dialogue in a batch of their own, which padding would slow down. On a GPU it is the KV cache a
# batch holds: 65,536 tokens of EXAONE-3.0-7.8B in bfloat16 are 8.6 GB (32 layers × 8 KV heads × 128 × 2 × 2
# bytes a token), next to 15.6 GB of weights on a 40 GB GPU; an 80 GB GPU holds 4× that
# (`benchmarks/gpu_bench.py` searches the largest budget that fits); a smaller GPU runs out of memory once and
# continues at half. Not measured on a GPU yet.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 8192, "gpu": 65536}
# vLLM schedules its own batches: this many dialogues go to it per call (and per sidecar flush).
VLLM_DIALOGUES_PER_CALL = 256


def default_max_batch_tokens(device: str) -> int:
    """The default budget on a torch device: ``cpu`` the CPU's, any other (``cuda:N``, ``mps``) the GPU's."""
    return DEFAULT_MAX_BATCH_TOKENS["cpu" if str(device).split(":")[0] == "cpu" else "gpu"]


@dataclass(frozen=True)
class BatchLimit:
    """What one generate call may hold: a token budget (``None``: none) and a dialogue cap (``None``: none)."""

    max_tokens: int | None
    max_dialogues: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive or None, got {self.max_tokens}")
        if self.max_dialogues is not None and self.max_dialogues < 1:
            raise ValueError(f"max_dialogues must be positive or None, got {self.max_dialogues}")

    def next_batch(self, ordered: Sequence[Job], start: int, new_tokens: int = 0, rows_per_dialogue: int = 1) -> int:
        """The end (exclusive) of the batch that starts at ``ordered[start]`` (``ordered``: longest prompt first)."""
        end, longest = start + 1, len(ordered[start].prompt_ids)
        while end < len(ordered):
            dialogues, longest = end + 1 - start, max(longest, len(ordered[end].prompt_ids))
            if self.max_dialogues is not None and dialogues > self.max_dialogues:
                break
            if self.max_tokens is not None and dialogues * rows_per_dialogue * (longest + new_tokens) > self.max_tokens:
                break
            end += 1
        return end

    def after_out_of_memory(self, batch: Sequence[Job], new_tokens: int = 0,
                            rows_per_dialogue: int = 1) -> "BatchLimit | None":
        """The limit to retry ``batch`` with after it ran out of memory; ``None`` when it was one dialogue."""
        if len(batch) == 1:
            return None
        if self.max_tokens is None:
            return BatchLimit(max_tokens=None, max_dialogues=len(batch) // 2)
        return BatchLimit(max_tokens=max(1, batch_tokens(batch, new_tokens, rows_per_dialogue) // 2),
                          max_dialogues=self.max_dialogues)

    def describe(self) -> str:
        """``--max-batch-tokens 8192`` / ``--batch-size 16`` / both, as the options that set them."""
        parts = [f"--max-batch-tokens {self.max_tokens}" if self.max_tokens is not None else "",
                 f"--batch-size {self.max_dialogues}" if self.max_dialogues is not None else ""]
        return ", ".join(part for part in parts if part) or "no limit"


def batch_tokens(batch: Sequence[Job], new_tokens: int = 0, rows_per_dialogue: int = 1) -> int:
    """What a batch counts against the budget: rows × (longest prompt + new tokens)."""
    longest = max(len(job.prompt_ids) for job in batch)
    return len(batch) * rows_per_dialogue * (longest + new_tokens)


def by_length(jobs: Sequence[Job]) -> list[Job]:
    """Longest prompt first (ties keep their order), so an out-of-memory error shows up in the first batch."""
    return sorted(jobs, key=lambda job: len(job.prompt_ids), reverse=True)


def plan_batches(jobs: Sequence[Job], limit: BatchLimit, new_tokens: int = 0,
                 rows_per_dialogue: int = 1) -> list[list[Job]]:
    """Every batch a run with ``limit`` forms when nothing runs out of memory, in order."""
    ordered, batches, start = by_length(jobs), [], 0
    while start < len(ordered):
        end = limit.next_batch(ordered, start, new_tokens, rows_per_dialogue)
        batches.append(ordered[start:end])
        start = end
    return batches
