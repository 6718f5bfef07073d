"""The generation engine behind `tools infer`, usable in-process (demo, reranking, notebooks).

Pieces, each usable alone:

* :func:`resolve_checkpoint` / :func:`load_engine` — a full checkpoint dir, a PEFT/Axolotl LoRA
  adapter dir (base + adapter, optionally merged) or a hub id, on the ``hf`` or ``vllm`` backend.
* :class:`HFEngine` — batched generation: left padding, greedy by default, each row stopped at EOS /
  ``[|endofturn|]``. Sampling (``num_candidates``) draws every row's randomness from its own generator
  seeded by ``(seed, example id, candidate index)`` (Gumbel-max), so a dialogue's candidates do not
  depend on batch size, batch composition or OOM retries.
* :func:`generate_all` — length-sorted batches with a progress bar; a CUDA OOM halves the batch.
* :class:`Sidecar` — finished results appended to ``<output>.partial.jsonl`` as they come, under a
  header recording the settings, so a killed run resumes and a run with other settings is refused.
* :func:`run_to_file` — all of the above, ending in the submission JSON (or candidates JSONL),
  written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import torch

from dataset_builders.io import write_json, write_jsonl
from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder

CHAT_TEMPLATE_TOKENS = ("[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]")
SIDECAR_SUFFIX = ".partial.jsonl"


class InferenceError(RuntimeError):
    """A problem the user can fix (bad checkpoint, mismatched sidecar, ...); one-line message."""


# --------------------------------------------------------------------------- decoding settings


@dataclass(frozen=True)
class Decoding:
    """What to generate. ``num_candidates=None`` is submission mode: one greedy summary per dialogue."""

    max_new_tokens: int = 1024
    num_candidates: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if self.num_candidates is not None and self.num_candidates < 1:
            raise ValueError(f"num_candidates must be positive, got {self.num_candidates}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.top_p <= 1:
            raise ValueError(f"top_p must be in [0, 1], got {self.top_p}")

    @property
    def sampling(self) -> bool:
        return self.num_candidates is not None

    @property
    def per_prompt(self) -> int:
        return self.num_candidates or 1

    def settings(self) -> dict[str, Any]:
        """The fields that change outputs (sampling parameters only matter when sampling)."""
        return asdict(self) if self.sampling else {"max_new_tokens": self.max_new_tokens, "greedy": True}


def row_seed(seed: int, example_id: str, candidate: int) -> int:
    """A 63-bit seed for one (example, candidate) row: independent of batching and run order."""
    digest = hashlib.sha256(f"{seed}\0{example_id}\0{candidate}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# --------------------------------------------------------------------------- post-processing


def postprocess(text: str, special_tokens: Iterable[str] = ()) -> str:
    """The reference clean-up: echoed chat-template/special tokens removed, whitespace runs (newlines
    included) collapsed to one space, ends stripped."""
    for token in sorted({*CHAT_TEMPLATE_TOKENS, *special_tokens} - {""}, key=len, reverse=True):
        text = text.replace(token, " ")
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """Where the weights, the adapter (if any) and the tokenizer come from."""

    model: str
    adapter: str | None = None
    tokenizer: str = ""

    def settings(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter}


def _has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()


def _looks_local(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; ``./x``, ``/x``, ``a/b/c`` or ``dir/x`` with ``dir`` here
    are paths."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
            or ("/" in name and Path(name.split("/")[0]).is_dir()))


def _adapter_base(config: dict[str, Any], where: str, base_model: str | None) -> str:
    base = base_model or config.get("base_model_name_or_path")
    if not base:
        raise InferenceError(f"{where}: adapter_config.json names no base_model_name_or_path; pass --base-model")
    if Path(base).exists():
        return str(Path(base).resolve())
    if _looks_local(base):
        raise InferenceError(f"{where}: base model {base} not found (relative to {Path.cwd()}); pass --base-model")
    return base


def resolve_checkpoint(ckpt: str | Path, base_model: str | None = None) -> Checkpoint:
    """A local dir is an adapter when it holds ``adapter_config.json`` (PEFT and Axolotl both write it);
    anything else that is not a local path is a hub id (itself possibly an adapter).

    The tokenizer (and chat template) comes from the checkpoint dir, else from the adapter's base.
    """
    path = Path(ckpt)
    if path.exists():
        if not path.is_dir():
            raise InferenceError(f"--ckpt {ckpt}: not a directory")
        path = path.resolve()
        adapter_config = path / "adapter_config.json"
        if adapter_config.is_file():
            try:
                config = json.loads(adapter_config.read_text(encoding="utf-8"))
            except ValueError as error:
                raise InferenceError(f"{adapter_config}: not valid JSON ({error})") from None
            base = _adapter_base(config, str(adapter_config), base_model)
            return Checkpoint(base, str(path), str(path) if _has_tokenizer(path) else base)
        if not (path / "config.json").is_file():
            raise InferenceError(f"--ckpt {ckpt}: no config.json (full model) or adapter_config.json (LoRA adapter)")
        return Checkpoint(str(path), None, str(path))
    if _looks_local(str(ckpt)):
        raise InferenceError(f"--ckpt {ckpt}: no such directory")
    try:  # a hub id: an adapter repo has an adapter_config.json
        from peft import PeftConfig

        config = PeftConfig.from_pretrained(str(ckpt)).to_dict()
    except Exception:  # noqa: BLE001 - not an adapter (or unreachable): load it as a full model
        return Checkpoint(str(ckpt), None, str(ckpt))
    base = _adapter_base(config, str(ckpt), base_model)
    return Checkpoint(base, str(ckpt), base)


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InferenceError(f"--device {device}: no CUDA GPU is available to torch {torch.__version__}")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: bfloat16 on CUDA, float32 elsewhere (CPU half precision is slow and inexact)."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


# --------------------------------------------------------------------------- engines


@dataclass(frozen=True)
class Job:
    """One dialogue to summarise: its id and rendered prompt token ids."""

    id: str
    prompt_ids: list[int]
    truncated: bool = False


class Engine(Protocol):
    tokenizer: Any
    decoding: Decoding

    def settings(self) -> dict[str, Any]: ...

    def generate(self, jobs: Sequence[Job]) -> list[list[str]]: ...


def stop_token_ids(tokenizer, model_eos: int | list[int] | None = None) -> list[int]:
    """EOS of the tokenizer and of the model's generation config, plus ``[|endofturn|]`` if known."""
    ids = [tokenizer.eos_token_id]
    ids += model_eos if isinstance(model_eos, list) else [model_eos]
    endofturn = tokenizer.convert_tokens_to_ids("[|endofturn|]")
    ids.append(endofturn if endofturn != tokenizer.unk_token_id else None)
    return sorted({i for i in ids if isinstance(i, int) and i >= 0})


def trim_at_stop(ids: Sequence[int], stop_ids: Iterable[int]) -> list[int]:
    """New tokens up to (not including) the first stop token; batch padding after it goes too."""
    stops = set(stop_ids)
    for index, token in enumerate(ids):
        if token in stops:
            return list(ids[:index])
    return list(ids)


class GumbelSampler:
    """Temperature + top-p sampling as ``argmax(warped logits + Gumbel noise)`` under greedy search.

    Each row draws its noise from its own generator, so row i's tokens depend only on its seed and
    its own logits — not on which other rows share the batch. Same distribution as multinomial
    sampling from ``softmax(logits / T)`` restricted to the top-p nucleus.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: torch.device | str):
        from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        uniform = torch.stack([
            torch.rand(scores.shape[-1], generator=generator, device=scores.device, dtype=torch.float32)
            for generator in self.generators
        ])
        gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float32).tiny)))
        return scores + gumbel


class HFEngine:
    """Batched ``model.generate`` with left padding; outputs independent of batching (see docs)."""

    backend = "hf"

    def __init__(self, model, tokenizer, decoding: Decoding, checkpoint: Checkpoint | None = None,
                 dtype: str = "float32", merged: bool = False):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.decoding = decoding
        self.checkpoint = checkpoint
        self.dtype = dtype
        self.merged = merged
        generation_config = getattr(model, "generation_config", None)
        self.stop_ids = stop_token_ids(tokenizer, getattr(generation_config, "eos_token_id", None))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.special_tokens = list(tokenizer.all_special_tokens)

    def settings(self) -> dict[str, Any]:
        checkpoint = self.checkpoint.settings() if self.checkpoint else {}
        return {"backend": self.backend, **checkpoint, "merged": self.merged, "dtype": self.dtype}

    def generation_config(self):
        from transformers import GenerationConfig

        # The knobs that would change greedy outputs are set explicitly, so a checkpoint's own
        # generation_config (whose unset fields `generate` still merges in) cannot turn on sampling,
        # beams or penalties.
        return GenerationConfig(
            max_new_tokens=self.decoding.max_new_tokens, do_sample=False, num_beams=1, repetition_penalty=1.0,
            no_repeat_ngram_size=0, eos_token_id=self.stop_ids, pad_token_id=self.pad_id,
        )

    @torch.inference_mode()
    def generate_ids(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int] | None = None) -> list[list[int]]:
        """Generate for a batch of prompts (token ids); ``seeds`` (one per row) switches on sampling.

        Returns each row's new tokens up to its first stop token.
        """
        from transformers import LogitsProcessorList

        device = self.model.device
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        processors = LogitsProcessorList()
        if seeds is not None:
            processors.append(GumbelSampler(seeds, self.decoding.temperature, self.decoding.top_p, device))
        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                     generation_config=self.generation_config(), logits_processor=processors)
        return [trim_at_stop(row[width:].tolist(), self.stop_ids) for row in output]

    def generate(self, jobs: Sequence[Job]) -> list[list[str]]:
        n = self.decoding.per_prompt
        prompts = [job.prompt_ids for job in jobs for _ in range(n)]
        seeds = ([row_seed(self.decoding.seed, job.id, k) for job in jobs for k in range(n)]
                 if self.decoding.sampling else None)
        texts = [postprocess(self.tokenizer.decode(ids, skip_special_tokens=True), self.special_tokens)
                 for ids in self.generate_ids(prompts, seeds)]
        return [texts[i * n:(i + 1) * n] for i in range(len(jobs))]


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class VLLMEngine:
    """The same interface on vLLM (``pip install .[gpu]``); vLLM schedules its own batches, so
    ``--batch-size`` is only how many prompts go to it per call (and per sidecar flush)."""

    backend = "vllm"

    def __init__(self, checkpoint: Checkpoint, decoding: Decoding, dtype: str, trust_remote_code: bool = False):
        try:
            from vllm import LLM
        except ImportError:
            raise InferenceError("--backend vllm needs vLLM, which is not installed: pip install '.[gpu]' "
                                 "(or use --backend hf)") from None
        from tools.options import load_tokenizer

        self.checkpoint, self.decoding, self.dtype = checkpoint, decoding, dtype
        self.tokenizer = load_tokenizer(checkpoint.tokenizer, trust_remote_code)
        self.lora = None
        lora_kwargs: dict[str, Any] = {}
        if checkpoint.adapter:
            from vllm.lora.request import LoRARequest

            from peft import PeftConfig

            rank = PeftConfig.from_pretrained(checkpoint.adapter).r
            self.lora = LoRARequest("adapter", 1, checkpoint.adapter)
            # vLLM accepts only some max_lora_rank values: the smallest one that fits this adapter.
            lora_kwargs = {"enable_lora": True,
                           "max_lora_rank": min((r for r in VLLM_LORA_RANKS if r >= rank), default=rank)}
        self.llm = LLM(model=checkpoint.model, tokenizer=checkpoint.tokenizer, dtype=dtype,
                       trust_remote_code=trust_remote_code, seed=decoding.seed, **lora_kwargs)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.special_tokens = list(self.tokenizer.all_special_tokens)

    def settings(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.checkpoint.settings(), "merged": False, "dtype": self.dtype}

    def generate(self, jobs: Sequence[Job]) -> list[list[str]]:
        from vllm import SamplingParams

        d = self.decoding
        params = [
            SamplingParams(n=d.per_prompt, max_tokens=d.max_new_tokens, stop_token_ids=self.stop_ids,
                           temperature=d.temperature if d.sampling else 0.0, top_p=d.top_p if d.sampling else 1.0,
                           seed=row_seed(d.seed, job.id, 0) if d.sampling else None)
            for job in jobs
        ]
        prompts = [{"prompt_token_ids": job.prompt_ids} for job in jobs]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        return [[postprocess(choice.text, self.special_tokens) for choice in output.outputs] for output in outputs]


def load_engine(
    ckpt: str | Path,
    decoding: Decoding = Decoding(),
    *,
    backend: str = "hf",
    base_model: str | None = None,
    merge_lora: bool = False,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
) -> Engine:
    """Load a checkpoint (full dir, LoRA adapter dir or hub id) for generation."""
    checkpoint = resolve_checkpoint(ckpt, base_model)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if backend == "vllm":
        return VLLMEngine(checkpoint, decoding, dtype, trust_remote_code)
    if backend != "hf":
        raise InferenceError(f"unknown backend {backend!r} (hf or vllm)")
    from transformers import AutoModelForCausalLM

    from tools.options import load_tokenizer

    tokenizer = load_tokenizer(checkpoint.tokenizer, trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code}
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(checkpoint.model, **kwargs)
        if checkpoint.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, checkpoint.adapter)
            if merge_lora:
                model = model.merge_and_unload()
    except (OSError, ValueError) as error:
        raise InferenceError(f"cannot load model {str(ckpt)!r}: {error}".splitlines()[0]) from None
    if device == "cpu":
        model = model.to(device)
    return HFEngine(model, tokenizer, decoding, checkpoint, dtype=dtype, merged=bool(checkpoint.adapter and merge_lora))


# --------------------------------------------------------------------------- prompts and batches


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def prepare_jobs(examples: Sequence[Example], builder: PromptBuilder, tokenizer) -> list[Job]:
    """Render each example's prompt with the one prompt builder (truncating as `build-sft-data` does)."""
    jobs = []
    for example in examples:
        prompt = builder.build(example)
        jobs.append(Job(example.id, chat_prompt_ids(tokenizer, prompt.messages), prompt.truncated))
    return jobs


def generate_all(
    jobs: Sequence[Job],
    generate: Callable[[Sequence[Job]], list[list[str]]],
    *,
    batch_size: int,
    on_batch: Callable[[Sequence[Job], list[list[str]]], None] = lambda jobs, results: None,
    progress: bool = True,
    initial: int = 0,
    total: int | None = None,
) -> int:
    """Generate for all jobs, longest prompts first, in batches; returns the batch size it ended with.

    A CUDA out-of-memory error halves the batch size and retries the same jobs (the smaller size is
    kept for the rest of the run); at batch size 1 it is an :class:`InferenceError`.
    """
    from tqdm.auto import tqdm

    ordered = sorted(jobs, key=lambda job: len(job.prompt_ids), reverse=True)
    bar = tqdm(total=total if total is not None else len(ordered), initial=initial, unit="ex",
               desc="infer", disable=not progress, dynamic_ncols=True)
    start = 0
    with bar:
        while start < len(ordered):
            batch = ordered[start:start + batch_size]
            try:
                results = generate(batch)
            except torch.cuda.OutOfMemoryError:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if batch_size == 1:
                    raise InferenceError("CUDA out of memory even at batch size 1: lower --max-new-tokens or "
                                         "--max-prompt-tokens, or use a smaller --dtype") from None
                batch_size //= 2
                bar.write(f"CUDA out of memory: retrying with --batch-size {batch_size}")
                continue
            on_batch(batch, results)
            bar.update(len(batch))
            start += len(batch)
    return batch_size


# --------------------------------------------------------------------------- resumable runs


class Sidecar:
    """``<output>.partial.jsonl``: a header line with the run's settings, then one line per finished
    example (``{"id", "output"}`` or ``{"id", "candidates"}``), flushed and fsynced per batch.

    A line cut short by a kill is dropped on reopen; a header that differs from this run's settings
    is refused, so results from different checkpoints or decoding settings never mix.
    """

    def __init__(self, output: Path | str, header: dict[str, Any]):
        output = Path(output)
        self.path = output.with_name(output.name + SIDECAR_SUFFIX)
        self.header = json.loads(json.dumps(header))  # normalised as it will read back

    def open(self, *, restart: bool = False) -> dict[str, dict[str, Any]]:
        """Start or resume; returns the finished rows by id."""
        if restart:
            self.path.unlink(missing_ok=True)
        header, rows = self._read() if self.path.exists() else (None, [])
        if header is None:  # a new run (or one killed before its header was written)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([{"header": self.header}], mode="w")
            return {}
        if header != self.header:
            changed = sorted(key for key in {*header, *self.header} if header.get(key) != self.header.get(key))
            raise InferenceError(
                f"{self.path} holds results of a run with different settings ({', '.join(changed)}); "
                f"delete it or pass --restart to start over"
            )
        return {row["id"]: row for row in rows}

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self._write_lines(rows, mode="a")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write_lines(self, rows: Sequence[dict[str, Any]], mode: str) -> None:
        with open(self.path, mode, encoding="utf-8") as file:
            file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            file.flush()
            os.fsync(file.fileno())

    def _read(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # killed mid-line: drop the torn tail before appending again
            with open(self.path, "r+b") as file:
                file.truncate(len(complete))
        lines = complete.decode("utf-8", errors="replace").splitlines()
        if not lines:  # killed before the header was complete: nothing to resume
            return None, []
        try:
            header = json.loads(lines[0])["header"]
            rows = [json.loads(line) for line in lines[1:] if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError):
            header = rows = None
        if not isinstance(header, dict) or not all(isinstance(row, dict) and "id" in row for row in rows or ()):
            raise InferenceError(f"{self.path} is not a results sidecar of `tools infer`; delete it or pass --restart")
        return header, rows


@dataclass
class RunReport:
    total: int
    resumed: int = 0
    generated: int = 0
    truncated: int = 0
    seconds: float = 0.0
    batch_size: int = 0
    sidecar: Path | None = None

    def summary(self) -> list[str]:
        rate = self.generated / self.seconds if self.seconds > 0 else 0.0
        return [
            f"examples: {self.total} ({self.resumed} resumed from {self.sidecar}, {self.generated} generated)"
            if self.resumed else f"examples: {self.total}",
            f"generation: {self.seconds:.1f} s, {rate:.2f} examples/s, final batch size {self.batch_size}",
            f"prompts truncated: {self.truncated}",
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
    batch_size: int = 16,
    restart: bool = False,
    progress: bool = True,
) -> RunReport:
    """Generate for every example not already in the sidecar, then write ``output`` atomically."""
    sampling = engine.decoding.sampling
    sidecar = Sidecar(output, run_header(engine, builder, examples))
    done = sidecar.open(restart=restart)
    done = {key: row for key, row in done.items() if key in {e.id for e in examples}}
    todo = prepare_jobs([e for e in examples if e.id not in done], builder, engine.tokenizer)
    report = RunReport(total=len(examples), resumed=len(done), generated=len(todo),
                       truncated=sum(job.truncated for job in todo), sidecar=sidecar.path)

    def on_batch(jobs: Sequence[Job], results: list[list[str]]) -> None:
        rows = [result_row(job.id, texts, sampling) for job, texts in zip(jobs, results)]
        sidecar.append(rows)
        done.update((row["id"], row) for row in rows)

    start = time.perf_counter()
    report.batch_size = generate_all(todo, engine.generate, batch_size=batch_size, on_batch=on_batch,
                                     progress=progress, initial=len(done), total=len(examples))
    report.seconds = time.perf_counter() - start
    write_results(output, examples, done, sampling)
    sidecar.remove()
    return report
