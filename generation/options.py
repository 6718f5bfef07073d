"""How a checkpoint is loaded, prompted and batched — everything but the checkpoint, the data and the decoding —
defined once: :class:`InferenceOptions`. Each field carries what the command line shows for it (its help, the
values it accepts, the default it names), so the options of `tools infer` and `tools select-checkpoint`
(``tools.options.generation_options``) are made from these fields, and the engine
(:func:`generation.loader.load_engine`) and the batches (:meth:`InferenceOptions.batch_limit`) read the same object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from common.errors import UserError
from common.limits import MAX_BATCH_TOKENS, MAX_ROWS, MAX_TOKENS
from generation.batching import DEFAULT_MAX_BATCH_TOKENS, VLLM_DIALOGUES_PER_CALL, BatchLimit, default_max_batch_tokens
from generation.vllm import VLLMSettings

BACKENDS = ("hf", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Bounds:
    """The numbers an option accepts: ``low`` (excluded when ``low_open``) to ``high``, integers or finite floats."""

    kind: type
    low: int | float
    high: int | float
    low_open: bool = False


def option(default: Any, help: str, *, choices: tuple[str, ...] = (), bounds: Bounds | None = None,
           shown_default: str | None = None, changes_output: bool = True) -> Any:
    """A field of :class:`InferenceOptions` with its command-line description: ``help``; ``choices`` or ``bounds``
    (what it accepts); ``shown_default``, what ``--help`` says a ``None`` default means; ``changes_output``: False
    for the settings that change only how fast a run goes, never what it writes. A flag is a field whose default is
    a bool."""
    return field(default=default, metadata={"help": help, "choices": choices, "bounds": bounds,
                                            "shown_default": shown_default, "changes_output": changes_output})


def prompt_option(default: Any) -> Any:
    """A field whose command-line option is the prompt builder's, shared with the data commands (one definition in
    tools/options.py: ``--system-prompt``/``--system-prompt-text``, ``--clean``, ``--max-prompt-tokens``)."""
    return field(default=default, metadata={"prompt": True, "changes_output": True})


@dataclass(frozen=True)
class InferenceOptions:
    """How to load, prompt and batch a checkpoint. ``None`` leaves a setting at its default (named in its help).
    Mistakes a command line cannot make (an unknown backend or dtype, vLLM's settings on the hf backend) are a
    :class:`UserError` when the options are made."""

    base_model: str | None = option(None, "Base model of a LoRA adapter (default: from adapter_config.json).")
    merge_lora: bool = option(False, "Merge a LoRA adapter into the base weights before generating.")
    backend: str = option("hf", "vllm: from its own environment (`make install-vllm`), which the command then runs in; "
                                "same output format.", choices=BACKENDS)
    trust_remote_code: bool = option(False, "Allow the checkpoint's own code to run.")
    system_prompt: str | None = prompt_option(None)
    clean_rules: tuple[str, ...] = prompt_option(())
    max_prompt_tokens: int | None = prompt_option(None)
    max_batch_tokens: int | None = option(
        None, "Token budget of one generate call: dialogues (longest prompts first) join a batch while rows × "
              "(longest prompt + --max-new-tokens) fits; halved automatically when memory runs out; 0: no budget",
        bounds=Bounds(int, 0, MAX_BATCH_TOKENS), changes_output=False,
        shown_default=f"{DEFAULT_MAX_BATCH_TOKENS['cpu']} on the CPU, {DEFAULT_MAX_BATCH_TOKENS['gpu']} on a GPU; "
                      "vllm: ignored, it schedules its own batches")
    batch_size: int | None = option(
        None, "At most N dialogues per generate call, within --max-batch-tokens", bounds=Bounds(int, 1, MAX_ROWS),
        changes_output=False, shown_default=f"no cap; vllm: {VLLM_DIALOGUES_PER_CALL} per call")
    dtype: str = option("auto", "auto: bfloat16 on CUDA, float32 on CPU.", choices=DTYPES)
    device: str = option("auto", "auto, cpu, cuda or cuda:N (auto: cuda if available, else cpu).", changes_output=False)
    max_model_len: int | None = option(
        None, "vllm: longest sequence (prompt + summary) to reserve memory for; prompts are budgeted to it",
        bounds=Bounds(int, 1, MAX_TOKENS), shown_default="the model's context")
    gpu_memory_utilization: float | None = option(
        None, "vllm: share of GPU memory for weights and KV cache", bounds=Bounds(float, 0, 1, low_open=True),
        shown_default=str(VLLMSettings().gpu_memory_utilization))
    tensor_parallel_size: int | None = option(
        None, "vllm: GPUs to split the model over (EXAONE 32B on < 80 GB GPUs)", bounds=Bounds(int, 1, 1024),
        shown_default=str(VLLMSettings().tensor_parallel_size))

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        object.__setattr__(self, "clean_rules", tuple(self.clean_rules))
        if self.backend != "vllm" and self._vllm_given():
            raise UserError("--max-model-len, --gpu-memory-utilization and --tensor-parallel-size apply only with "
                            "--backend vllm")

    def _vllm_given(self) -> dict[str, Any]:
        return {setting.name: getattr(self, setting.name) for setting in fields(VLLMSettings)
                if getattr(self, setting.name) is not None}

    def vllm_settings(self) -> VLLMSettings:
        """vLLM's own settings: those given, vLLM's defaults for the rest."""
        return VLLMSettings(**self._vllm_given())

    def batch_limit(self, device: str) -> BatchLimit:
        """How these options batch on ``device`` — decided here only: on hf a token budget (``max_batch_tokens``;
        default by device, 0 for none) and an optional dialogue cap (``batch_size``); vLLM schedules its own batches,
        so there only the dialogues per call count."""
        if self.backend == "vllm":
            return BatchLimit(max_tokens=None, max_dialogues=self.batch_size or VLLM_DIALOGUES_PER_CALL)
        tokens = default_max_batch_tokens(device) if self.max_batch_tokens is None else self.max_batch_tokens
        return BatchLimit(max_tokens=tokens or None, max_dialogues=self.batch_size)

    def output_settings(self) -> dict[str, Any]:
        """The settings that can change what a run writes (not batching, not the device)."""
        return {key: value for key, value in asdict(self).items()
                if self.__dataclass_fields__[key].metadata["changes_output"]}
