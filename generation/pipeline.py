"""One call from a checkpoint and a NIKL file to the output file, with every option `tools infer` has — what
`tools infer` and `tools select-checkpoint` both run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder
from generation.batching import VLLM_DIALOGUES_PER_CALL, BatchLimit, default_max_batch_tokens
from generation.decoding import Decoding
from generation.runner import RunReport, prompt_budget, run_to_file


@dataclass(frozen=True)
class InferenceOptions:
    """How to load and prompt a checkpoint (everything but the checkpoint, the data and the decoding)."""

    backend: str = "hf"
    base_model: str | None = None
    merge_lora: bool = False
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    system_prompt: str | None = None
    clean_rules: tuple[str, ...] = ()
    max_prompt_tokens: int | None = None
    batch_size: int | None = None  # at most this many dialogues per generate call; default: no cap (hf), 256 (vllm)
    max_batch_tokens: int | None = None  # hf: batch token budget (default by device: DEFAULT_MAX_BATCH_TOKENS; 0: none)
    vllm: Any = None  # generation.vllm.VLLMSettings for --backend vllm (context, memory, parallelism)

    @classmethod
    def from_flat(cls, *, max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
                  tensor_parallel_size: int | None = None, clean_rules: Sequence[str] = (),
                  **fields: Any) -> "InferenceOptions":
        """The options from flat values, as the command line has them: vLLM's three knobs become
        :class:`~generation.vllm.VLLMSettings` when the backend is vllm or any of them is given (so the hf
        backend can refuse them); ``None`` leaves a knob at vLLM's default here."""
        given = {"max_model_len": max_model_len, "gpu_memory_utilization": gpu_memory_utilization,
                 "tensor_parallel_size": tensor_parallel_size}
        vllm = None
        if fields.get("backend") == "vllm" or any(value is not None for value in given.values()):
            from generation.vllm import VLLMSettings

            vllm = VLLMSettings(**{key: value for key, value in given.items() if value is not None})
        return cls(**fields, clean_rules=tuple(clean_rules), vllm=vllm)


def describe_engine(engine: Any) -> str:
    """One line: what was loaded, how (model, adapter, dtype, device)."""
    settings = engine.settings()
    adapter = settings.get("adapter")
    device = getattr(getattr(engine, "model", None), "device", None) or settings.get("device", "")
    merged = " (merged)" if settings.get("merged") else ""
    parts = [f"model {settings.get('model')}", f"adapter {adapter}{merged}" if adapter else "no adapter",
             f"{settings.get('dtype')} on {device}" if device else str(settings.get("dtype")),
             f"{settings.get('backend')} backend"]
    notes = "".join(f"; {note}" for note in getattr(engine, "notes", []))
    return "loaded " + ", ".join(parts) + notes


def batch_limit(options: InferenceOptions, device: str) -> BatchLimit:
    """How ``options`` batch on ``device``: on hf a token budget (``--max-batch-tokens``; default by device, 0 for
    none) and an optional dialogue cap (``--batch-size``); vLLM schedules its own batches, so there only the
    dialogues per call count."""
    if options.backend == "vllm":
        return BatchLimit(max_tokens=None, max_dialogues=options.batch_size or VLLM_DIALOGUES_PER_CALL)
    tokens = default_max_batch_tokens(device) if options.max_batch_tokens is None else options.max_batch_tokens
    return BatchLimit(max_tokens=tokens or None, max_dialogues=options.batch_size)


def infer_file(ckpt: str | Path, examples: Sequence[Example], output: Path | str, decoding: Decoding,
               options: InferenceOptions = InferenceOptions(), *, restart: bool = False, progress: bool = True,
               notify: Callable[[str], None] = lambda message: None) -> RunReport:
    """Load ``ckpt``, budget the prompts to its context, generate for ``examples`` and write ``output``
    (resumable; see :func:`generation.runner.run_to_file`). ``notify`` hears what was loaded and any
    sidecar line that could not be kept."""
    from common.io import refuse_writing_into
    from generation.checkpoints import resolve_checkpoint
    from generation.loader import load_engine
    from generation.sidecar import output_lock, side_files

    checkpoint = resolve_checkpoint(ckpt, options.base_model)
    refuse_writing_into({"--output": output, **side_files(output)},
                        {"--ckpt": ckpt, "its base model": checkpoint.model, "its tokenizer": checkpoint.tokenizer})
    with output_lock(output):  # before loading: a second run on this output stops at once
        engine = load_engine(ckpt, decoding, backend=options.backend, base_model=options.base_model,
                             merge_lora=options.merge_lora, dtype=options.dtype, device=options.device,
                             trust_remote_code=options.trust_remote_code, vllm=options.vllm)
        budget = prompt_budget(engine.context_length, decoding.max_new_tokens, options.max_prompt_tokens)
        builder = PromptBuilder(system_prompt=options.system_prompt, clean_rules=options.clean_rules,
                                tokenizer=engine.tokenizer, max_prompt_tokens=budget)
        if options.backend == "vllm" and options.max_batch_tokens is not None:
            notify("--max-batch-tokens applies to the hf backend; vLLM schedules its own batches (ignored)")
        limit = batch_limit(options, engine.device)
        return run_to_file(engine, examples, builder, output, limit=limit, restart=restart,
                           progress=progress, notify=notify, announce=describe_engine(engine))
