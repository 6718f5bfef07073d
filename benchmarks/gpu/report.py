"""The report: the device and library versions, ``gpu_bench.json`` and ``gpu_bench.md`` rewritten after every
phase (so a killed run still leaves what it measured), and the result tables in docs/benchmarks.md between markers."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.common import cpu_model, markdown, replace_marked
from benchmarks.gpu import REPO
from benchmarks.gpu.shapes import peak_tflops

DOCS_BEGIN = "<!-- gpu_bench:results:begin -->"
DOCS_END = "<!-- gpu_bench:results:end -->"
DOCS_FILES = (REPO / "docs" / "benchmarks.md",)  # the one page that holds the GPU results


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    found = {"python": platform.python_version()}
    for label, dist in (("torch", "torch"), ("transformers", "transformers"), ("peft", "peft"),
                        ("accelerate", "accelerate"), ("flash-attn", "flash-attn"), ("vllm", "vllm"),
                        ("axolotl", "axolotl")):
        try:
            found[label] = version(dist)
        except PackageNotFoundError:
            found[label] = "not installed"
    found["cuda"] = torch.version.cuda or "none"
    return found


def device_info(device: str, peak_override: float | None) -> dict[str, Any]:
    import torch

    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        name = props.name
        peak, how = peak_tflops(name)
        memory = round(props.total_memory / 2**30, 1)
    else:
        name, memory = f"CPU: {cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)", None
        peak, how = None, "CPU: MFU n/a (no bf16 tensor-core peak)"
    if peak_override:
        peak, how = peak_override, f"--peak-tflops {peak_override:g}"
    return {"name": name, "type": "cuda" if device.startswith("cuda") else device, "memory_gib": memory,
            "peak_bf16_tflops": peak, "peak_source": how}


def public_view(value: Any) -> Any:
    """``value`` without the private (``_``-prefixed) keys of its dicts, at any depth."""
    if isinstance(value, dict):
        return {key: public_view(item) for key, item in value.items() if not str(key).startswith("_")}
    if isinstance(value, list):
        return [public_view(item) for item in value]
    return value


class Report:
    """The JSON report, written after every phase so a killed run still leaves what it measured."""

    def __init__(self, out: Path, data: dict[str, Any]):
        self.out, self.data = out, data

    def phase(self, name: str, status: str, seconds: float, limit: float | None) -> None:
        self.data["phases"][name] = {"status": status, "seconds": round(seconds, 1),
                                     "limit_s": round(limit, 1) if limit is not None else None}
        print(f"[gpu_bench] {name}: {status} ({seconds:.1f} s)", file=sys.stderr, flush=True)
        self.write()

    def public(self) -> dict[str, Any]:
        return public_view(self.data)

    def write(self) -> None:
        self.data["total_seconds"] = round(time.perf_counter() - self.data["_start"], 1)
        public = self.public()
        (self.out / "gpu_bench.json").write_text(json.dumps(public, indent=2, ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
        (self.out / "gpu_bench.md").write_text(report_markdown(public), encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Markdown


def fmt(value: Any) -> str:
    """Numbers with as many digits as they deserve (1,234 / 12.3 / 1.23 / 0.0123); "–" for none."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    size = abs(value)
    return (f"{value:,.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.2f}" if size >= 1
            else f"{value:.3g}")


def billions(count: Any) -> str:
    return f"{count / 1e9:.2f} B" if isinstance(count, int) and count >= 1e8 else fmt(count)


def environment_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    dev, ver = report["device"], report["versions"]
    torch_build = f"(CUDA {ver['cuda']})" if ver["cuda"] != "none" else "(CPU build)"
    libraries = f"{ver['transformers']} / {ver['peft']} / {ver['accelerate']}"
    run = f"`{report['command'].strip()}`, {report['date']}, {report.get('total_seconds')} s in all"
    memory = f", {dev['memory_gib']} GiB" if dev.get("memory_gib") else ""
    flash = ver["flash-attn"] + ("" if ver["flash-attn"] != "not installed" else " (training uses sdpa)")
    vllm = ver["vllm"] + ("" if ver["vllm"] != "not installed" else " (vLLM cases skipped)")
    return [
        {"item": "device", "value": f"{dev['name']}{memory}"},
        {"item": "peak for MFU", "value": dev["peak_source"]},
        {"item": "torch", "value": f"{ver['torch']} {torch_build}"},
        {"item": "transformers / peft / accelerate", "value": libraries},
        {"item": "flash-attn", "value": flash},
        {"item": "vLLM", "value": vllm},
        {"item": "Axolotl", "value": ver["axolotl"]},
        {"item": "run", "value": run},
    ]


def generation_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    total = report["generation"]["prompts"]
    return [{
        "case": case["case"], "status": case["status"],
        "batch": fmt(case["batch_size"]) if case.get("max_batch_tokens") is None
        else f"≤ {case['max_batch_tokens']:,} tokens",
        "examples run": fmt(case["examples_run"]), "prompt tok/s": fmt(case["prompt_tokens_per_s"]),
        "generated tok/s": fmt(case["generated_tokens_per_s"]), "examples/s": fmt(case["examples_per_s"]),
        f"s for all {total} (projected)": fmt(case["projected_seconds_all"]),
        "peak GiB": fmt(case["peak_memory_gib"]), "note": case["note"] or "",
    } for case in report["generation"]["cases"]]


def training_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    def percent(value: Any) -> str:
        return f"{value * 100:.1f} %" if isinstance(value, float) else fmt(value)

    return [{
        "case": case["case"], "status": case["status"], "shape": case["shape"],
        "params (trainable)": f"{billions(case['params'])} ({fmt(case['trainable_params'])})",
        "attention": fmt(case["attention"]), "s/step": fmt(case["seconds_per_step"]),
        "tokens/s": fmt(case["tokens_per_s"]), "TFLOP/s": fmt(case["achieved_tflops"]),
        "MFU": percent(case["mfu"]), "HFU": percent(case["hfu"]), "peak GiB": fmt(case["peak_memory_gib"]),
        "note": case["note"] or "",
    } for case in report["training"]["cases"]]


def phase_rows(report: dict[str, Any]) -> list[dict[str, str]]:
    def seconds(value: Any) -> str:
        return f"{value:.1f}" if isinstance(value, (int, float)) else "–"

    return [{"phase": name, "status": phase["status"], "seconds": seconds(phase["seconds"]),
             "limit s": seconds(phase["limit_s"])} for name, phase in report["phases"].items()]


def docs_block(report: dict[str, Any]) -> str:
    """The result tables (environment, generation, training, phases) with a heading that says what ran."""
    gen, train = report["generation"], report["training"]
    tokens = gen["prompt_lengths"]["tokens"]
    smoke = report["tiny"] or report["device"]["type"] != "cuda"
    lines = []
    if smoke:
        lines += ["**CPU tiny-shape smoke numbers — NOT GPU numbers.** They only show that every phase runs "
                  "and what the tables look like; no GPU has measured this benchmark yet.", ""]
    lines += [markdown(environment_rows(report)), "",
              f"Generation: {gen['prompts']} prompts of {tokens['p0']}–{tokens['p100']} tokens (median "
              f"{tokens['p50']}, mean {tokens['mean']}), {gen['new_tokens']} new tokens each.", "",
              markdown(generation_rows(report)), "",
              f"Training: one packed {train['seq_len']}-token row per step (forward + backward + AdamW step).", "",
              markdown(training_rows(report)), "",
              markdown(phase_rows(report))]
    return "\n".join(lines)


def report_markdown(report: dict[str, Any]) -> str:
    return "\n".join([
        "# GPU benchmark (`benchmarks/gpu_bench.py`)", "",
        docs_block(report), "",
        "FLOP formulas (per packed row of T tokens):", "",
        *[f"- **{key}**: {text}" for key, text in report["training"]["flop_formulas"].items()], "",
        f"Prompt lengths: {report['generation']['prompt_lengths']['tokens_per_char']:.4g} tokens per character of "
        f"dialogue text + {report['generation']['prompt_lengths']['overhead_tokens']} tokens of system prompt, "
        "chat template and question (an assumption; see the script's docstring).", "",
    ])


# --------------------------------------------------------------------------------------------------
# The docs: the tables between the result markers (``--docs``)


def replace_block(text: str, block: str) -> str | None:
    """``text`` with the part between the result markers replaced by ``block``; None without markers."""
    return replace_marked(text, DOCS_BEGIN, DOCS_END, block)


def update_docs(block: str, paths: Sequence[Path] = DOCS_FILES) -> list[Path]:
    written = []
    for path in paths:
        if path.is_file():
            new = replace_block(path.read_text(encoding="utf-8"), block)
            if new is not None:
                path.write_text(new, encoding="utf-8")
                written.append(path)
    return written
