"""Benchmark: the organisers' ROUGE (Mecab morphemes, ROUGE-1/2/L) over a test-split-sized set.

408 pairs (the real test split's size) of ~400-character Korean summaries (the dev references'
median is ~377), made from the bundled fixture summaries: references are fixture summaries joined
and cut at a word boundary near 400 characters, predictions are the same texts with every fifth word dropped and a
sentence from another example appended, so the LCS has real work to do. Cases:

- cold: nothing cached — tokenizes all 816 texts, then scores; the first row is a fresh process's
  first use of Mecab, the second (ROUGE-1/2 only) shows the steady tokenizing cost;
- new predictions, cached references: what DPO pair building and checkpoint comparison repeat;
- ROUGE-1 only, cached: what MBR reranking's similarity costs.

"cpu seconds" is this process's CPU time, less sensitive than wall time to other jobs on the machine.
Run: `python benchmarks/rouge_speed.py`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import markdown  # noqa: E402
from dataset_builders.nikl import load_nikl, sample_files  # noqa: E402
from eval import rouge  # noqa: E402

TEST_SIZE = 408  # the real test split's size
TARGET_CHARS = 400


def synthetic_pairs(count: int = TEST_SIZE, variant: int = 0) -> tuple[list[str], list[str]]:
    summaries = [example.output for path in sample_files(("train", "dev")) for example in load_nikl(path)]
    predictions, references = [], []
    for index in range(count):
        parts, offset = [], index
        while sum(len(part) + 1 for part in parts) < TARGET_CHARS:
            parts.append(summaries[offset % len(summaries)])
            offset += 1
        reference = f"({index}) " + " ".join(parts)
        reference = reference[: reference.rfind(" ", 0, TARGET_CHARS + 20)]  # ~400 chars, whole words
        words = reference.split()
        kept = [word for position, word in enumerate(words) if (position + variant) % 5 != 4]  # keeps "(i)"
        predictions.append(" ".join(kept) + " " + summaries[(index * 3 + variant) % len(summaries)])
        references.append(reference)
    return predictions, references


def _timed(label: str, predictions: list[str], references: list[str], keys) -> dict[str, object]:
    start, cpu_start = time.perf_counter(), time.process_time()
    scores = rouge.rouge_f(predictions, references, keys)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"benchmark": "rouge", "case": label, "pairs": len(predictions),
            "mean chars": round(sum(map(len, references)) / len(references)),
            "seconds": round(seconds, 3), "cpu seconds": round(cpu_seconds, 3),
            "pairs/s": round(len(predictions) / seconds, 1),
            "ROUGE-1 F": round(100 * rouge.corpus_mean(scores["rouge1"]), 2)}


def _clear_caches() -> None:
    rouge.tokenize.cache_clear()
    rouge.prepare.cache_clear()


def main() -> list[dict[str, object]]:
    rouge.tokenize("워밍업")  # load Mecab (~0.01 s); the dictionary's pages still come in during row 1
    predictions, references = synthetic_pairs()
    _clear_caches()
    rows = [_timed("cold: tokenize all + ROUGE-1/2/L (tools score)", predictions, references, rouge.ROUGE_KEYS)]
    _clear_caches()
    rows.append(_timed("cold again: tokenize all + ROUGE-1/2", predictions, references, ("rouge1", "rouge2")))
    new_predictions, _ = synthetic_pairs(variant=1)
    rows.append(_timed("new predictions, cached references: ROUGE-1/2/L", new_predictions, references,
                       rouge.ROUGE_KEYS))
    rows.append(_timed("all cached: ROUGE-1 only", predictions, references, ("rouge1",)))
    return rows


if __name__ == "__main__":
    print(markdown(main()))
