"""vLLM: the random weights saved to a temporary directory (vLLM loads from one), then the vLLM cases in a
child process (``gpu_bench.py --vllm-child SPEC``: vLLM holds the GPU until its process ends) killed at the
phase's limit, its results passed back through a JSON file rewritten after every batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.gpu import REPO
from benchmarks.gpu.generation_phase import GEN_FIELDS, case_limit, run_batches
from benchmarks.gpu.shapes import Profile, Shape
from benchmarks.gpu.timing import Clock, PhaseFailed, PhaseTimeout

ENTRY_POINT = REPO / "benchmarks" / "gpu_bench.py"  # the child runs it with --vllm-child


def word_tokenizer(vocab: int, positions: int):
    """A tokenizer that decodes every id of the random model to one word ``t<id>`` and has no EOS, so the
    vLLM engine decodes all ``--new-tokens`` and the words count them."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=positions)


def save_for_vllm(model, shape: Shape, directory: Path) -> None:
    model.generation_config.eos_token_id = None
    model.save_pretrained(directory)
    word_tokenizer(shape.vocab, shape.positions).save_pretrained(directory)


def vllm_child(spec_path: str) -> None:
    """``--vllm-child SPEC``: the vLLM cases of SPEC through ``load_engine(..., backend="vllm")`` and
    ``generate_all``, each within SPEC's time budget, SPEC's ``result`` file rewritten after every batch."""
    child_start = time.perf_counter()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    result_path = Path(spec["result"])
    result: dict[str, Any] = {"cases": spec["cases"], "load_seconds": None}

    def write() -> None:
        result_path.write_text(json.dumps(result, indent=2), encoding="utf-8")

    import torch

    from generation.decoding import Decoding
    from generation.jobs import Job
    from generation.loader import load_engine

    engine = load_engine(spec["model"], Decoding(max_new_tokens=spec["new_tokens"]), backend="vllm",
                         device="cuda", dtype="bfloat16")
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
        run_batches(generate, lambda: words[0], jobs, case_limit(case), clock, case, "cuda",
                    memory=device_memory, on_progress=write)
        case["status"] = "ok"
        write()


def vllm_phase(model_dir: Path, jobs, profile: Profile, limit: float, cases: list[dict[str, Any]], out: Path) -> None:
    """Run :func:`vllm_child` in its own process group, killed at ``limit``; copy back what it measured."""
    result_file = model_dir / "vllm_result.json"
    result_file.unlink(missing_ok=True)
    spec = {"model": str(model_dir), "new_tokens": profile.new_tokens, "ids": [job.id for job in jobs],
            "prompts": [job.prompt_ids for job in jobs], "result": str(result_file),
            "budget_s": max(1.0, limit - 10), "cases": [{**case, "status": "not run"} for case in cases]}
    spec_path = model_dir / "vllm_spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    log = out / "vllm_child.log"
    status, timed_out = "ok", False
    with open(log, "w", encoding="utf-8") as log_file:
        child = subprocess.Popen([sys.executable, str(ENTRY_POINT), "--vllm-child", str(spec_path)],
                                 cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
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
        case.update({key: value for key, value in row.items() if key in GEN_FIELDS and key != "case"})
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
