"""Benchmark: SFT data building over a train-split-sized set (506 dialogues made from the fixtures).

Prints a markdown table: the plain build, the build with token statistics, and the build with
question-preserving truncation (tiny local tokenizer). Run: `python benchmarks/build_data_speed.py`.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import markdown  # noqa: E402
from dataset_builders.nikl import load_nikl, sample_files  # noqa: E402
from dataset_builders.prompt import PromptBuilder  # noqa: E402
from dataset_builders.sft import BuildStats, sft_rows  # noqa: E402
from exaone.tiny import build_tiny_model  # noqa: E402

TRAIN_SIZE = 506  # the real train split's size


def synthetic_examples(count: int = TRAIN_SIZE):
    base = load_nikl(sample_files(("train",))[0])
    out = []
    for index in range(count):
        example = base[index % len(base)]
        # Longer dialogues, like the real ones (median ~2,500 chars): repeat the conversation 6 times.
        out.append(dataclasses.replace(example, id=f"bench-{index:04d}", conversation=example.conversation * 6))
    return out


def main() -> list[dict[str, object]]:
    from transformers import AutoTokenizer

    examples = synthetic_examples()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(Path(tmp) / "tiny"))
    rows = []
    for label, builder in [
        ("prompt only", PromptBuilder()),
        ("+ token statistics", PromptBuilder(tokenizer=tokenizer)),
        ("+ truncation to 512 tokens", PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=512)),
    ]:
        stats = BuildStats()
        start = time.perf_counter()
        sft_rows(examples, builder, stats)
        seconds = time.perf_counter() - start
        rows.append({"benchmark": "build-sft-data", "case": label, "examples": len(examples),
                     "seconds": round(seconds, 3), "examples/s": round(len(examples) / seconds, 1),
                     "truncated": stats.truncated})
    return rows


if __name__ == "__main__":
    print(markdown(main()))
