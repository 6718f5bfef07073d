"""Benchmark: `tools convert-exaone` on a 2.5 GB checkpoint — peak memory and throughput.

The checkpoint is EXAONE-3.0-7.8B-Instruct's own config cut to 2 of its 32 layers: every tensor has its
real shape and dtype (bf16; the 102400 × 4096 embedding and lm_head are the largest, 839 MB each), random
values, written in EXAONE's hub layout as 4 shards (embedding / layer 0 / layer 1 / final norm + lm_head)
with ``model.safetensors.index.json``. Each case converts it in a fresh Python process and reads that
process's ``VmHWM`` (peak resident memory, /proc/self/status), so the benchmark's own memory does not count;
"peak growth" is VmHWM minus the resident memory just before the conversion started (interpreter and
imports), compared with the largest shard. Goal: ≤ 1.5× the largest shard. Each case runs 3 times: the
median time, the highest peak.

Cases:

- ``convert, source in page cache``: the shards were just written (and fsynced), so reads come from memory;
- ``convert, source evicted``: the same after ``posix_fadvise(DONTNEED)`` on the source shards, so they
  are read from disk;
- ``naive: load_file + save_file per shard``: what a straightforward converter does (safetensors' own
  load and save, one shard at a time), for comparison.

Throughput is input GB / wall seconds until the conversion returns (the output is then in the page cache,
written back by the kernel afterwards, as for any command); "on disk" adds an fsync of every output file,
so it is bound by the disk. Both move with the machine's other I/O. Needs ~5 GB of free disk in the temp
directory. Run: `python benchmarks/convert_speed.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import markdown, one_torch_thread  # noqa: E402
from common.checkpoint_files import CONFIG, SAFETENSORS_INDEX, write_checkpoint_json  # noqa: E402
from exaone.layout import tensor_shapes  # noqa: E402
from exaone.tiny import exaone_config  # noqa: E402

LAYERS = 2
GOAL = 1.5  # peak growth / largest shard
REPEATS = 3
CASES = [  # (case, child mode, evict the source from the page cache first)
    ("convert, source in page cache", "convert", False),
    ("convert, source evicted (read from disk)", "convert", True),
    ("naive: load_file + save_file per shard", "naive", False),
]

# Runs in a fresh interpreter: argv = mode, source, output. Prints one JSON line.
CHILD = """
import json, os, pathlib, sys, time
sys.path.insert(0, {repo!r})
from exaone.convert import convert

def status(key):
    with open("/proc/self/status") as status_file:
        return next(int(line.split()[1]) * 1024 for line in status_file if line.startswith(key + ":"))

mode, source, output = sys.argv[1:]
before, start = status("VmRSS"), time.perf_counter()
if mode == "convert":
    convert(source, output, progress=False)
else:  # naive: the whole shard through safetensors' load_file / save_file
    from safetensors.torch import load_file, save_file
    pathlib.Path(output).mkdir()
    for shard in sorted(pathlib.Path(source).glob("*.safetensors")):
        save_file(load_file(str(shard)), str(pathlib.Path(output) / shard.name), metadata={{"format": "pt"}})
returned = time.perf_counter() - start
for path in pathlib.Path(output).iterdir():  # then wait until the shards are on disk
    descriptor = os.open(path, os.O_RDONLY)
    os.fsync(descriptor)
    os.close(descriptor)
print(json.dumps({{"seconds": returned, "on disk": time.perf_counter() - start, "before": before,
                  "peak": status("VmHWM")}}))
"""


def checkpoint_config() -> dict:
    """EXAONE-3.0-7.8B-Instruct's config.json, 2 layers instead of 32."""
    config = exaone_config("3.0", vocab_size=102400, hidden_size=4096, num_layers=LAYERS)
    return {**config, "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8,
            "torch_dtype": "bfloat16"}


def write_checkpoint(directory: Path) -> list[int]:
    """Random bf16 weights in EXAONE's layout, one shard generated and written at a time; returns shard sizes."""
    import torch
    from safetensors.torch import save_file

    config = checkpoint_config()
    shapes = tensor_shapes(config, tied=False, where="benchmark")
    groups = ([["transformer.wte.weight"]]
              + [[name for name in shapes if name.startswith(f"transformer.h.{layer}.")] for layer in range(LAYERS)]
              + [["transformer.ln_f.weight", "lm_head.weight"]])
    generator = torch.Generator().manual_seed(0)
    weight_map, sizes = {}, []
    directory.mkdir()
    for number, names in enumerate(groups, 1):
        file = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        tensors = {name: torch.randn(shapes[name], dtype=torch.bfloat16, generator=generator) for name in names}
        save_file(tensors, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
        sizes.append((directory / file).stat().st_size)
        del tensors
    write_checkpoint_json(directory / SAFETENSORS_INDEX, {"metadata": {"total_size": sum(sizes)},
                                                          "weight_map": weight_map})
    write_checkpoint_json(directory / CONFIG, config)
    return sizes


def flush(directory: Path, *, evict: bool) -> None:
    """fsync the source shards (only them: nothing else on the machine is touched), so their write-back does not
    land in a measurement; with ``evict`` also drop them from the page cache, so the next read is from disk."""
    for shard in directory.glob("*.safetensors"):
        descriptor = os.open(shard, os.O_RDONLY)
        try:
            os.fsync(descriptor)
            if evict:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def run_child(mode: str, source: Path, output: Path) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO)), mode, str(source), str(output)],
                            capture_output=True, text=True, check=True)
    shutil.rmtree(output)  # 2.5 GB each: keep the disk footprint to the source and one output
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(case: str, mode: str, source: Path, output: Path, sizes: list[int], *, evict: bool) -> dict[str, object]:
    """REPEATS runs of one case: median times (this VM's disk is shared and jumpy), the highest peak memory."""
    runs = []
    for _ in range(REPEATS):
        flush(source, evict=evict)
        runs.append(run_child(mode, source, output))
    seconds, on_disk = (statistics.median(run[key] for run in runs) for key in ("seconds", "on disk"))
    growth = max(run["peak"] - run["before"] for run in runs)
    fastest, slowest = min(run["seconds"] for run in runs), max(run["seconds"] for run in runs)
    largest, total = max(sizes), sum(sizes)
    return {"benchmark": "convert-exaone", "case": case, "shards": len(sizes), "GB": round(total / 1e9, 2),
            "largest shard MB": round(largest / 1e6), "seconds": round(seconds, 2),
            "seconds (min–max)": f"{fastest:.2f}–{slowest:.2f}",
            "GB/s": round(total / 1e9 / seconds, 2), "GB/s on disk": round(total / 1e9 / on_disk, 2),
            "peak RSS growth MB": round(growth / 1e6, 1), "vs largest shard": f"{growth / largest:.2f}×",
            "goal": f"≤ {GOAL}×"}


def main() -> list[dict[str, object]]:
    with one_torch_thread(), tempfile.TemporaryDirectory() as tmp:  # generating the random weights: one core
        source, output = Path(tmp) / "EXAONE-3.0-2-layers", Path(tmp) / "converted"
        sizes = write_checkpoint(source)
        return [measure(case, mode, source, output, sizes, evict=evict) for case, mode, evict in CASES]


if __name__ == "__main__":
    start = time.perf_counter()
    print(markdown(main()))
    print(f"(took {time.perf_counter() - start:.0f} s)")
