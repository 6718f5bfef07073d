"""Benchmark: how `tools infer` batches — one dialogue at a time, fixed batches, the token budget.

The tiny random EXAONE-shaped model on CPU, one torch thread, the engine `tools infer` runs (prompt builder,
length-sorted batches, sidecar, submission file; model loading excluded), greedy, ``MAX_NEW_TOKENS`` new
tokens (the random model never emits EOS, so every row decodes exactly that many). Prompt sets:

* ``fixtures`` — the 16 bundled fixture dialogues ×4 (new ids), prompts of 129–192 tokens;
* ``long`` — the same with each conversation repeated 4 times (363–603 tokens);
* ``dev`` / ``test`` — the full-size synthetic splits (`tools build-synthetic-data`: the real splits' sizes
  and length distributions), prompts cut to 3,072 tokens as `tools infer` cuts them on EXAONE 3.0 (4,096
  positions − 1,024 new tokens);
* ``mix`` — a real-length mix: 48 fixture dialogues and 48 synthetic test dialogues spread over its lengths,
  short and long in one file;
* ``candidates`` — `--num-candidates 4` (seeded sampling) on the first 32 synthetic dev dialogues: each
  dialogue is 4 rows of the batch.

Batching cases, each a `generation.batching.BatchLimit`:

* ``sequential`` — `--batch-size 1`;
* ``fixed 16`` — `--batch-size 16 --max-batch-tokens 0`;
* ``default`` — `--max-batch-tokens 8192` (`DEFAULT_MAX_BATCH_TOKENS["cpu"]`), no dialogue cap.

Every case runs ``REPEATS`` times, interleaved (the order rotates each round), and the table gives the median
seconds and the median peak memory: the process's peak resident memory during the run (Linux's VmHWM, reset
before each run) above what it held before. Every case must reproduce the sequential outputs exactly, or the
script fails. ``--budgets 8192,32768,…`` adds budget cases (how the default was chosen).

A last set of cases times the default batching on the fixtures with one torch thread, the default (`tools
infer` without `--threads`: the CPUs other processes leave idle, waiting threads sleeping), and every CPU this
process may use with waiting threads sleeping and spinning (libgomp's own default: the default before), on an
idle machine and beside two processes that each keep a core busy. Each case runs in a process of its own (the
OpenMP wait policy is read when torch loads), interleaved; "time vs 1 thread" is the median of the paired ratios
(above 1: slower). `--sets ""` runs only these. Run:
`python benchmarks/infer_throughput.py [--sets fixtures,dev] [--repeats 3] [--budgets 8192,16384]
[--plot docs/images/infer_batching.png]`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import one_torch_thread, tables  # noqa: E402
from dataset_builders.synthetic import write_split  # noqa: E402
from dataset_builders.nikl import load_nikl, sample_files  # noqa: E402
from dataset_builders.prompt import PromptBuilder  # noqa: E402
from exaone.tiny import build_tiny_model  # noqa: E402
from generation.batching import DEFAULT_MAX_BATCH_TOKENS, BatchLimit  # noqa: E402

EXAMPLES = 64
MAX_NEW_TOKENS = 32
PROMPT_BUDGET = 4096 - 1024  # what `tools infer` gives a prompt on EXAONE 3.0 with the default --max-new-tokens
REPEATS = 3
SETS = ("fixtures", "long", "dev", "test", "mix", "candidates")
CANDIDATES = 4
CPU_BUDGET = DEFAULT_MAX_BATCH_TOKENS["cpu"]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    limit: BatchLimit
    label: str = ""  # in the plot's legend


CASES = (
    Case("sequential (--batch-size 1)", BatchLimit(None, 1), label="--batch-size 1"),
    Case("fixed 16 (--batch-size 16 --max-batch-tokens 0)", BatchLimit(None, 16), label="--batch-size 16"),
    Case(f"default (--max-batch-tokens {CPU_BUDGET})", BatchLimit(CPU_BUDGET),
         label=f"default: --max-batch-tokens {CPU_BUDGET}"),
)


def fixture_dialogues(count: int = EXAMPLES, repeat: int = 1):
    base = [example for path in sample_files() for example in load_nikl(path)]
    return [dataclasses.replace(base[i % len(base)], id=f"bench-{i:03d}",
                                conversation=base[i % len(base)].conversation * repeat)
            for i in range(count)]


def prompt_sets(names: Sequence[str], folder: Path) -> dict[str, list]:
    """The dialogues of each named set (see the module docstring)."""
    needs = {"dev": "dev", "test": "test", "mix": "test", "candidates": "dev"}
    synthetic = {split: load_nikl(write_split(folder, split)) for split in {needs[n] for n in names if n in needs}}
    sets = {"fixtures": lambda: fixture_dialogues(), "long": lambda: fixture_dialogues(repeat=4),
            "dev": lambda: synthetic["dev"], "test": lambda: synthetic["test"],
            "mix": lambda: fixture_dialogues(48) + synthetic["test"][::len(synthetic["test"]) // 48][:48],
            "candidates": lambda: synthetic["dev"][:32]}
    return {name: sets[name]() for name in names}


def memory_kib(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (None where there is no /proc)."""
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), flags=re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def reset_peak_memory() -> int | None:
    """Free what can be freed, reset the peak-RSS mark (Linux ``clear_refs`` 5); the resident KiB now."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return memory_kib("VmRSS")


def timed_run(run: Callable[[], Any]) -> tuple[float, float | None]:
    """(seconds, peak memory growth in MB) of ``run()``."""
    before = reset_peak_memory()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = memory_kib("VmHWM")
    return seconds, (peak - before) / 1024 if peak is not None and before is not None else None


def compare(engine, builder, examples, cases: Sequence[Case], repeats: int, folder: Path) -> list[dict[str, Any]]:
    """Every case ``repeats`` times, interleaved; each case's outputs must equal the first case's."""
    from generation.runner import run_to_file

    seconds: dict[str, list[float]] = {case.name: [] for case in cases}
    memory: dict[str, list[float]] = {case.name: [] for case in cases}
    batches: dict[str, str] = {}
    outputs: dict[str, list[str]] = {}
    for round_ in range(repeats):
        for case in cases[round_ % len(cases):] + cases[:round_ % len(cases)]:
            output = folder / ("out.jsonl" if engine.decoding.sampling else "out.json")
            reports = []
            took, grew = timed_run(lambda: reports.append(run_to_file(engine, examples, builder, output,
                                                                       limit=case.limit, progress=False)))
            seconds[case.name].append(took)
            memory[case.name].append(grew)
            sizes = reports[0].batch_sizes
            batches[case.name] = f"{len(sizes)} × {min(sizes)}–{max(sizes)}" if min(sizes) != max(sizes) \
                else f"{len(sizes)} × {sizes[0]}"
            text = output.read_text(encoding="utf-8")
            texts = [json.loads(line)["candidates"] for line in text.splitlines()] if engine.decoding.sampling \
                else [row["output"] for row in json.loads(text)]
            outputs.setdefault(case.name, texts)
            if cases[0].name in outputs and texts != outputs[cases[0].name]:
                raise SystemExit(f"{case.name}: outputs differ from {cases[0].name}")
    reference = statistics.median(seconds[cases[0].name])
    rows = []
    for case in cases:
        median = statistics.median(seconds[case.name])
        grown = [value for value in memory[case.name] if value is not None]
        rows.append({"case": case.name, "batches": batches[case.name], "seconds": round(median, 2),
                     "seconds (min–max)": f"{min(seconds[case.name]):.2f}–{max(seconds[case.name]):.2f}",
                     "examples/s": round(len(examples) / median, 1), "vs sequential": f"{reference / median:.2f}×",
                     "peak memory MB": round(statistics.median(grown)) if grown else "n/a",
                     "outputs": "reference" if case is cases[0] else "identical"})
    return rows


def where_time_goes(engine, builder, examples, repeats: int) -> list[dict[str, Any]]:
    """Prefill vs decoding of the 16 longest prompts of ``examples``: one at a time, and one batch (prefilled
    prompt by prompt). Prefill: a run with one new token; decoding: the rest of a run with ``max_new_tokens``.
    Medians of ``repeats`` interleaved runs."""
    from generation.decoding import Decoding
    from generation.jobs import prepare_jobs

    jobs = sorted(prepare_jobs(examples, builder, engine.tokenizer), key=lambda job: -len(job.prompt_ids))[:16]
    decoding = engine.decoding
    ways = {"one at a time": 1, "batch of 16": 16}
    measured: dict[tuple[str, int], list[tuple[float, float | None]]] = {}
    for round_ in range(repeats):
        for name, size in ways.items():
            for new_tokens in (1, decoding.max_new_tokens):
                engine.decoding = Decoding(max_new_tokens=new_tokens)
                measured.setdefault((name, new_tokens), []).append(timed_run(
                    lambda: [engine.generate(jobs[i:i + size]) for i in range(0, len(jobs), size)]))
    engine.decoding = decoding
    rows = []
    for name in ways:
        prefill = statistics.median(seconds for seconds, _ in measured[(name, 1)])
        whole = statistics.median(seconds for seconds, _ in measured[(name, decoding.max_new_tokens)])
        peaks = [grew for _, grew in measured[(name, 1)] if grew is not None]
        rows.append({"case": name, "prefill s": round(prefill, 2), "decoding s": round(whole - prefill, 2),
                     "prefill peak memory MB": round(statistics.median(peaks)) if peaks else "n/a"})
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Speed relative to one at a time (log scale) and peak memory of every batching case on every set, as an
    800×450 PNG: whether a case ever falls below one at a time shows at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [row for row in rows if "vs sequential" in row]
    sets = list(dict.fromkeys(str(row["case"]).split(", ")[0] for row in rows))
    cases = list(dict.fromkeys(str(row["case"]).split(", ", 1)[1] for row in rows))
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(8, 4.5), dpi=100, gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(cases)
    for index, case in enumerate(cases):
        mine = {str(row["case"]).split(", ")[0]: row for row in rows if str(row["case"]).endswith(case)}
        x = [position + (index - (len(cases) - 1) / 2) * width for position in range(len(sets))]
        label = next((known.label for known in CASES if known.name == case), case)
        speed.bar(x, [float(str(mine[name]["vs sequential"]).rstrip("×")) for name in sets], width, label=label)
        memory.bar(x, [float(mine[name]["peak memory MB"]) for name in sets], width)
    speed.axhline(1.0, color="black", linestyle="--", linewidth=0.8)
    speed.set_yscale("log")
    speed.set_ylabel("speed vs --batch-size 1 (log)")
    memory.set_yscale("log")
    memory.set_ylabel("peak memory, MB (log)")
    for axis in (speed, memory):
        axis.set_xticks(range(len(sets)), sets, rotation=30, fontsize="small")
        axis.grid(axis="y", alpha=0.3)
    speed.legend(fontsize="x-small", loc="upper right")
    figure.suptitle("tools infer batching, tiny model on CPU (benchmarks/infer_throughput.py)", fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


@contextlib.contextmanager
def competing_load(processes: int):
    """``processes`` processes that each keep one CPU core busy (spinning) while the block runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5 if spinners else 0)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


# How torch's threads are set in each thread case: --threads ("default": none, `tools`' choice; "all": every CPU
# this process may use, the default before), and the OpenMP wait policy of the process (set before torch loads;
# None leaves it unset: libgomp's own default, ~3 ms of spinning before a waiting thread sleeps).
THREAD_CASES = {
    "1 thread (--threads 1)": ("1", "PASSIVE"),
    "default (the idle CPUs, waiting threads sleep)": ("default", "PASSIVE"),
    "all CPUs, waiting threads sleep": ("all", "PASSIVE"),
    "all CPUs, waiting threads spin (the default before)": ("all", None),
}
BUSY_PROCESSES = 2  # as many as this machine has cores: every core wanted by something else


def thread_child(model: str, threads: str, repeats: int = 5) -> tuple[int, float]:
    """In a fresh process (the wait policy is read when torch loads): the default batching on the 64 fixture
    dialogues, ``repeats`` times after a warm-up; the threads used and the median seconds."""
    from common.devices import available_cpus, use_threads
    from generation.checkpoints import resolve_checkpoint
    from generation.decoding import Decoding
    from generation.loader import load_engine
    from generation.options import InferenceOptions
    from generation.runner import run_to_file

    chosen = use_threads(None if threads == "default" else available_cpus() if threads == "all" else int(threads))
    options = InferenceOptions(device="cpu")  # the default batching
    engine = load_engine(resolve_checkpoint(model), Decoding(max_new_tokens=MAX_NEW_TOKENS), options)
    builder = PromptBuilder(tokenizer=engine.tokenizer, max_prompt_tokens=PROMPT_BUDGET)
    examples = fixture_dialogues()
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(repeats + 1):
            start = time.perf_counter()
            run_to_file(engine, examples, builder, Path(tmp) / "out.json", limit=options.batch_limit(engine.device),
                        progress=False)
            if round_:  # the first is the warm-up
                seconds.append(time.perf_counter() - start)
    return chosen, statistics.median(seconds)


def thread_rows(model: Path, repeats: int) -> list[dict[str, object]]:
    """Every thread case on an idle machine and beside ``BUSY_PROCESSES`` busy processes, each run in its own
    process, ``repeats`` interleaved rounds; "time vs 1 thread" is the median of each round's ratio (paired, so it
    holds while the machine's speed drifts; above 1: slower)."""
    import os

    rows = []
    for busy in (0, BUSY_PROCESSES):
        seconds: dict[str, list[float]] = {name: [] for name in THREAD_CASES}
        used: dict[str, list[int]] = {name: [] for name in THREAD_CASES}
        with competing_load(busy):
            for round_ in range(repeats):
                names = list(THREAD_CASES)
                for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                    threads, policy = THREAD_CASES[name]
                    env = {key: value for key, value in os.environ.items()
                           if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
                    env.update({"OMP_WAIT_POLICY": policy} if policy else {})
                    result = subprocess.run([sys.executable, __file__, "--thread-child", str(model), threads],
                                            env=env, capture_output=True, text=True, check=True)
                    threads_used, took = result.stdout.split()[-2:]
                    used[name].append(int(threads_used))
                    seconds[name].append(float(took))
        first = next(iter(THREAD_CASES))
        for name, values in seconds.items():
            median = statistics.median(values)
            ratios = [value / one for value, one in zip(values, seconds[first])]
            rows.append({
                "benchmark": "infer threads (tiny model, CPU)",
                "case": f"fixtures, default batching, {name}, " + (f"{busy} busy processes" if busy else "idle"),
                "threads": "–".join(map(str, sorted({min(used[name]), max(used[name])}))),
                "examples": EXAMPLES, "seconds": round(median, 2),
                "seconds (min–max)": f"{min(values):.2f}–{max(values):.2f}",
                "examples/s": round(EXAMPLES / median, 1),
                "time vs 1 thread": f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})",
            })
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"interleaved runs of each case (default {REPEATS})")
    parser.add_argument("--budgets", default="", help="extra --max-batch-tokens cases, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=MAX_NEW_TOKENS, help=f"default {MAX_NEW_TOKENS}")
    parser.add_argument("--no-threads", action="store_true", help="skip the thread-count cases")
    parser.add_argument("--thread-child", nargs=2, metavar=("MODEL", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--plot", type=Path, help="also draw the batching cases as a PNG here "
                                                   "(docs/images/infer_batching.png)")
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.sets.split(","))) - set(SETS)
    if unknown:
        parser.error(f"--sets: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SETS)}")
    return args


def main(argv: Sequence[str] = ()) -> list[dict[str, object]]:
    from generation.checkpoints import resolve_checkpoint
    from generation.decoding import Decoding
    from generation.hf import HFEngine
    from generation.jobs import prepare_jobs
    from generation.loader import load_engine
    from generation.options import InferenceOptions

    args = parse_args(argv)
    cases = list(CASES) + [Case(f"--max-batch-tokens {budget}", BatchLimit(int(budget)))
                           for budget in filter(None, args.budgets.split(","))]
    rows = []
    with one_torch_thread(), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine = load_engine(resolve_checkpoint(build_tiny_model(folder / "tiny")), Decoding(max_new_tokens=args.new_tokens),
                             InferenceOptions(device="cpu"))
        builder = PromptBuilder(tokenizer=engine.tokenizer, max_prompt_tokens=PROMPT_BUDGET)
        engine.generate(prepare_jobs(fixture_dialogues(2), builder, engine.tokenizer))  # warm-up
        sampler = HFEngine(engine.model, engine.tokenizer, Decoding(max_new_tokens=args.new_tokens,
                                                                     num_candidates=CANDIDATES, seed=0))
        for name, examples in prompt_sets(list(filter(None, args.sets.split(","))), folder).items():
            print(f"[infer_throughput] {name}: {len(examples)} dialogues …", file=sys.stderr, flush=True)
            lengths = sorted(len(job.prompt_ids) for job in prepare_jobs(examples, builder, engine.tokenizer))
            runner = sampler if name == "candidates" else engine
            for row in compare(runner, builder, examples, cases, args.repeats, folder):
                rows.append({"benchmark": "infer (tiny model, CPU, 1 thread)", "case": f"{name}, {row.pop('case')}",
                             "examples": len(examples),
                             "prompt tokens": f"{lengths[0]}–{lengths[len(lengths) // 2]}–{lengths[-1]}",
                             "max_new_tokens": args.new_tokens, **row})
        if "dev" in args.sets.split(","):
            for row in where_time_goes(engine, builder, prompt_sets(["dev"], folder)["dev"], args.repeats):
                rows.append({"benchmark": "infer: where the time goes (16 longest synthetic dev prompts)", **row,
                             "max_new_tokens": args.new_tokens})
        if not args.no_threads:
            rows += thread_rows(folder / "tiny", args.repeats)
    if args.plot:
        print(f"[infer_throughput] wrote {plot(rows, args.plot)}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--thread-child"]:
        print(*thread_child(*parse_args(sys.argv[1:]).thread_child))
    else:
        print("\n\n".join(tables(main(sys.argv[1:]))))
