"""Benchmark: `tools infer` generation, sequential (batch 1) vs batched, same greedy settings.

The tiny random EXAONE-shaped model on CPU, one torch thread (the numbers are about batching; one
thread also keeps them steady on a shared machine), the engine `tools infer` runs (prompt builder,
length-sorted batches, sidecar, submission file), model loading excluded. Two sets of 64 dialogues:

* ``fixtures`` — the 16 bundled fixture dialogues ×4 (new ids), prompts of 129–192 tokens;
* ``long`` — the same with each conversation repeated 4 times (363–603 tokens), closer to the
  real data's length; the tiny model's 64-wide layers make attention over the long context its main
  cost, so batching gains less here than on a real 7.8B model, whose weights dominate every step.

The random model never emits EOS, so every example costs exactly ``MAX_NEW_TOKENS`` = 64 decoding
steps; that keeps the whole run well under two minutes on 2 CPU cores. Every batched run must
reproduce the sequential outputs exactly.

A last set of cases times the default batch on the fixtures with one torch thread and with the default
thread count (`tools infer --threads`: the CPUs this process may use), on an idle machine and with a
competing process that keeps one core busy — why `--threads` exists. Run:
`python benchmarks/infer_throughput.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import markdown, one_torch_thread  # noqa: E402
from dataset_builders.nikl import load_nikl  # noqa: E402
from dataset_builders.prompt import PromptBuilder  # noqa: E402
from common.checkout import SAMPLE_DATA  # noqa: E402
from exaone.tiny import build_tiny_model  # noqa: E402

EXAMPLES = 64
MAX_NEW_TOKENS = 64
BATCH_SIZES = (1, 16, 32)


def fixture_dialogues(count: int = EXAMPLES, repeat: int = 1):
    base = [example for split in ("train", "dev", "test")
            for example in load_nikl(SAMPLE_DATA / f"일상대화요약_{split}.json")]
    return [dataclasses.replace(base[i % len(base)], id=f"bench-{i:03d}",
                                conversation=base[i % len(base)].conversation * repeat)
            for i in range(count)]


@contextlib.contextmanager
def competing_load(busy: bool):
    """A process that keeps one CPU core busy (spinning) while the block runs, when ``busy``."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        yield
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()


def thread_rows(engine, builder, examples) -> list[dict[str, object]]:
    """Default batch, 1 thread vs the default thread count, idle and with one core taken."""
    import torch

    from common.devices import available_cpus
    from generation.runner import run_to_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for busy in (False, True):
            for threads in sorted({1, available_cpus()}):
                torch.set_num_threads(threads)
                with competing_load(busy):
                    start = time.perf_counter()
                    run_to_file(engine, examples, builder, Path(tmp) / f"t{threads}{busy}.json", batch_size=16,
                                progress=False)
                    seconds = time.perf_counter() - start
                rows.append({
                    "benchmark": "infer threads (tiny model, CPU)",
                    "case": f"fixtures, batch 16, {threads} thread{'s' if threads > 1 else ''}"
                            + (" (default)" if threads == available_cpus() else "")
                            + (", one core busy" if busy else ", idle"),
                    "examples": len(examples), "seconds": round(seconds, 2),
                    "examples/s": round(len(examples) / seconds, 1),
                })
    return rows


def main() -> list[dict[str, object]]:
    from generation.decoding import Decoding
    from generation.jobs import prepare_jobs
    from generation.loader import load_engine
    from generation.runner import run_to_file

    rows = []
    with one_torch_thread():
        with tempfile.TemporaryDirectory() as tmp:
            engine = load_engine(build_tiny_model(Path(tmp) / "tiny"), Decoding(max_new_tokens=MAX_NEW_TOKENS),
                                 device="cpu")
            builder = PromptBuilder(tokenizer=engine.tokenizer)
            for name, examples in [("fixtures", fixture_dialogues()), ("long", fixture_dialogues(repeat=4))]:
                lengths = [len(job.prompt_ids) for job in prepare_jobs(examples, builder, engine.tokenizer)]
                engine.generate(prepare_jobs(examples[:2], builder, engine.tokenizer))  # warm-up
                reference = None
                for batch_size in BATCH_SIZES:
                    output = Path(tmp) / f"{name}-{batch_size}.json"
                    start = time.perf_counter()
                    run_to_file(engine, examples, builder, output, batch_size=batch_size, progress=False)
                    seconds = time.perf_counter() - start
                    texts = [row["output"] for row in json.loads(output.read_text(encoding="utf-8"))]
                    reference = reference or (texts, seconds)
                    if texts != reference[0]:
                        raise SystemExit(f"{name}, batch size {batch_size}: outputs differ from batch size 1")
                    rows.append({
                        "benchmark": "infer (tiny model, CPU, 1 thread)",
                        "case": f"{name}, " + ("sequential (batch 1)" if batch_size == 1 else f"batch {batch_size}"),
                        "examples": len(examples),
                        "prompt tokens": f"{min(lengths)}–{max(lengths)}",
                        "max_new_tokens": MAX_NEW_TOKENS,
                        "seconds": round(seconds, 2),
                        "examples/s": round(len(examples) / seconds, 1),
                        "vs sequential": f"{reference[1] / seconds:.1f}×",
                        "outputs": "reference" if batch_size == 1 else "identical",
                    })
            rows += thread_rows(engine, builder, fixture_dialogues())
    return rows


if __name__ == "__main__":
    print(markdown(main()))
