"""The one way through generation, what `tools infer` runs and `tools select-checkpoint` runs for each checkpoint:
:class:`Inference` — a checkpoint resolved once, with its decoding and its
:class:`~generation.options.InferenceOptions` — writes the output file for a NIKL file's examples; it takes the
output's lock once, before loading, and decides the batches once. :meth:`Inference.record` says what that output
depends on, without loading anything.

Example::

    from dataset_builders.nikl import load_nikl
    from generation.pipeline import Decoding, Inference, InferenceOptions

    inference = Inference.resolve("outputs/exaone-lora/best", Decoding(max_new_tokens=512),
                                  InferenceOptions(max_batch_tokens=32768))
    report = inference.write(load_nikl("일상대화요약_dev.json"), "dev_pred.json")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from common.io import refuse_writing_into
from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder
from generation.checkpoints import Checkpoint, resolve_checkpoint
from generation.decoding import Decoding
from generation.loader import load_engine
from generation.options import InferenceOptions
from generation.runner import RunReport, examples_digest, prompt_budget, run_to_file
from generation.sidecar import output_lock, side_files

# What a caller of the entry needs, from here: the settings it takes, what it reports, the files beside an output.
__all__ = ["Decoding", "Inference", "InferenceOptions", "RunReport", "describe_engine", "side_files"]


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


@dataclass(frozen=True)
class Inference:
    """A checkpoint, resolved once (:func:`generation.checkpoints.resolve_checkpoint`: nothing after reads its
    configs again), with how it decodes and how it is loaded, prompted and batched."""

    checkpoint: Checkpoint
    decoding: Decoding = Decoding()
    options: InferenceOptions = InferenceOptions()

    @classmethod
    def resolve(cls, ckpt: str | Path, decoding: Decoding = Decoding(),
                options: InferenceOptions = InferenceOptions()) -> "Inference":
        """``ckpt`` (a full checkpoint dir, a LoRA adapter dir or a hub id) resolved with ``options.base_model``."""
        return Inference(resolve_checkpoint(ckpt, options.base_model), decoding, options)

    def record(self, examples: Sequence[Example]) -> dict[str, Any]:
        """What the output for ``examples`` depends on — the checkpoint's files, the decoding, the options that can
        change an output, the input's content — known without loading: while it is the same, so is the output."""
        return {"checkpoint": self.checkpoint.settings(), "decoding": self.decoding.settings(),
                "options": self.options.output_settings(), "input_sha256": examples_digest(examples)}

    def write(self, examples: Sequence[Example], output: Path | str, *, restart: bool = False, progress: bool = True,
              notify: Callable[[str], None] = lambda message: None) -> RunReport:
        """Load the checkpoint, budget the prompts to its context, generate for ``examples`` and write ``output``
        (resumable; see :func:`generation.runner.run_to_file`), holding ``output``'s lock throughout. ``notify``
        hears what was loaded and any sidecar line that could not be kept."""
        checkpoint, options = self.checkpoint, self.options
        refuse_writing_into({"--output": output, **side_files(output)},
                            {"--ckpt": checkpoint.name, "its base model": checkpoint.model,
                             "its tokenizer": checkpoint.tokenizer})
        with output_lock(output):  # before loading: a second run on this output stops at once
            engine = load_engine(checkpoint, self.decoding, options)
            budget = prompt_budget(engine.context_length, self.decoding.max_new_tokens, options.max_prompt_tokens)
            builder = PromptBuilder(system_prompt=options.system_prompt, clean_rules=options.clean_rules,
                                    tokenizer=engine.tokenizer, max_prompt_tokens=budget)
            if options.backend == "vllm" and options.max_batch_tokens is not None:
                notify("--max-batch-tokens applies to the hf backend; vLLM schedules its own batches (ignored)")
            return run_to_file(engine, examples, builder, output, limit=options.batch_limit(engine.device),
                               restart=restart, progress=progress, notify=notify, announce=describe_engine(engine))
