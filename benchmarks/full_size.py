"""Benchmark: the commands at the real task's size, on the synthetic set (`tools build-synthetic-data`).

The tiny random EXAONE-shaped model (CPU; `tools infer` with its default thread count) has EXAONE 3.0's
context, 4,096 positions, and a tokenizer trained on the sample dialogues, so the synthetic test split's
longest conversations do not fit with 1,024 new tokens — as on the real model. Cases:

* ``build-sft-data`` on the 506 training dialogues with ``--max-seq-len 4096`` (every row fits);
* the prompts of ``tools infer`` on the 408 test dialogues with the default budget (context − 1,024 new
  tokens): how many are cut, and the longest prompt;
* ``tools infer`` end to end on the same 408 dialogues with that budget (``--max-prompt-tokens 3072``) but
  32 new tokens, so the run takes a minute instead of ten (the random model never stops early).

Run: `python benchmarks/full_size.py`.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import markdown, one_torch_thread  # noqa: E402
from dataset_builders.synthetic import write_split  # noqa: E402

CONTEXT = 4096
DEFAULT_NEW_TOKENS = 1024
BENCH_NEW_TOKENS = 32


def count(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    if not match:
        raise SystemExit(f"benchmark: no {pattern!r} in the command's output:\n{text}")
    return int(match.group(1))


def main() -> list[dict[str, object]]:
    from click.testing import CliRunner

    from common.tokenizer import load_tokenizer
    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import PromptBuilder
    from exaone.tiny import build_tiny_model
    from generation.jobs import prepare_jobs
    from generation.runner import prompt_budget
    from tools.cli import cli

    rows = []
    with one_torch_thread():
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            model = build_tiny_model(tmp / "tiny")
            train, test = write_split(tmp, "train"), write_split(tmp, "test")

            def run(*args: object) -> tuple[str, float]:
                start = time.perf_counter()
                result = CliRunner().invoke(cli, [str(arg) for arg in args])
                seconds = time.perf_counter() - start
                if result.exit_code != 0:
                    raise SystemExit(f"tools {args[0]} failed:\n{result.output}")
                return result.output, seconds

            output, seconds = run("build-sft-data", "--input", train, "--output", tmp / "train.jsonl",
                                  "--tokenizer", model, "--max-seq-len", CONTEXT)
            rows.append({"benchmark": "full size (tiny model, CPU)", "case": f"build-sft-data, 506 train, --max-seq-len {CONTEXT}",
                         "examples": 506, "seconds": round(seconds, 2), "examples/s": round(506 / seconds, 1),
                         "truncated": count(r"examples truncated: (\d+)", output),
                         "longest (tokens)": max(int(v) for v in re.findall(r"row tokens: .* max (\d+)", output))})

            tokenizer = load_tokenizer(str(model))
            budget = prompt_budget(CONTEXT, DEFAULT_NEW_TOKENS, None)
            examples = load_nikl(test)
            start = time.perf_counter()
            jobs = prepare_jobs(examples, PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=budget), tokenizer)
            seconds = time.perf_counter() - start
            rows.append({"benchmark": "full size (tiny model, CPU)",
                         "case": f"tools infer prompts, 408 test, default budget {budget}",
                         "examples": len(jobs), "seconds": round(seconds, 2), "examples/s": round(len(jobs) / seconds, 1),
                         "truncated": sum(job.truncated for job in jobs),
                         "longest (tokens)": max(len(job.prompt_ids) for job in jobs)})

            output, seconds = run("infer", "--no-progress", "--ckpt", model, "--input", test, "--output",
                                  tmp / "result.json", "--max-prompt-tokens", budget, "--max-new-tokens",
                                  BENCH_NEW_TOKENS)
            rows.append({"benchmark": "full size (tiny model, CPU)",
                         "case": f"tools infer, 408 test, budget {budget}, {BENCH_NEW_TOKENS} new tokens",
                         "examples": 408, "seconds": round(seconds, 1), "examples/s": round(408 / seconds, 1),
                         "truncated": count(r"prompts truncated: (\d+)", output),
                         "longest (tokens)": f"≤ {budget}"})
    return rows


if __name__ == "__main__":
    print(markdown(main()))
