"""The vLLM backend (its own environment: ``make install-vllm``): the same prompts, stop tokens, decoding and files as the HF
backend, on vLLM's own scheduling. Checked against vLLM's source for the range in :data:`VLLM_RANGE`.

What this module does so that a first GPU run works:

* vLLM's engine runs in a child process: it is started with ``spawn`` (``VLLM_WORKER_MULTIPROC_METHOD``),
  so CUDA touched in this process (device checks, a previous HF run) cannot break it, and ``--device
  cuda:N`` becomes ``CUDA_VISIBLE_DEVICES`` before vLLM starts (:func:`device_env`).
* ``max_model_len`` is the model's context unless given, the same number the prompt budget is taken from,
  so a prompt is cut by our prompt builder before vLLM sees it — never an error in the middle of a batch.
* An adapter vLLM cannot serve (``modules_to_save``, DoRA, per-module rank patterns, a rank over 512, a
  trained bias) — or any adapter with ``--merge-lora`` — is merged with PEFT into a temporary directory,
  and that is served (:func:`adapter_problems`, :func:`merge_adapter`).
* Text comes from the generated token ids through :func:`generation.decoding.finish_text`, exactly as the
  HF backend decodes (vLLM's incremental detokenizer skips ``clean_up_tokenization_spaces``).
* Candidate sampling switches on vLLM's batch-invariant mode (``VLLM_BATCH_INVARIANT=1``) on GPUs of
  compute capability ≥ 8.0, so a dialogue's candidates do not depend on what else is in the batch.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.errors import UserError
from common.files import clear_leftovers, leftover_name
from common.stack import vllm_venv_origin
from common.tokenizer import load_tokenizer
from generation.checkpoints import Checkpoint
from generation.decoding import Decoding, finish_text, row_seed, stop_token_ids
from generation.jobs import Job

VLLM_RANGE = ">=0.11.1,<0.33"  # the releases whose LLM/SamplingParams/LoRARequest API the calls below were checked against
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class VLLMSettings:
    """vLLM's own knobs (``--max-model-len``, ``--gpu-memory-utilization``, ``--tensor-parallel-size``)."""

    max_model_len: int | None = None  # None: the model's context
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1


def device_env(device: str, tensor_parallel_size: int = 1, visible: str | None = None) -> dict[str, str]:
    """The environment that makes vLLM use ``--device``: ``auto``/``cuda`` keep the visible GPUs, ``cuda:N``
    keeps only the N-th of them; a CPU device is refused (vLLM here is the GPU backend)."""
    if device in ("auto", "cuda"):
        return {}
    if not device.startswith("cuda:") or not device[5:].isdigit():
        raise UserError(f"--device {device}: the vllm backend runs on CUDA GPUs (auto, cuda or cuda:N); "
                        "use --backend hf for the CPU")
    if tensor_parallel_size > 1:
        raise UserError(f"--device {device} picks one GPU but --tensor-parallel-size is {tensor_parallel_size}; "
                        "choose the GPUs with CUDA_VISIBLE_DEVICES instead")
    index = int(device[5:])
    gpus = [gpu.strip() for gpu in visible.split(",")] if visible else None
    if gpus is not None and index >= len(gpus):
        raise UserError(f"--device {device}: CUDA_VISIBLE_DEVICES={visible} makes only {len(gpus)} GPU(s) visible")
    return {"CUDA_VISIBLE_DEVICES": gpus[index] if gpus is not None else str(index)}


def adapter_problems(config: dict[str, Any]) -> list[str]:
    """What in a PEFT ``adapter_config.json`` vLLM's LoRA support cannot serve (empty: it can)."""
    problems = []
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']}")
    if config.get("use_dora"):
        problems.append("DoRA")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        problems.append("per-module rank/alpha patterns")
    if (config.get("r") or 0) > max(VLLM_LORA_RANKS):
        problems.append(f"rank {config['r']} > {max(VLLM_LORA_RANKS)}")
    if config.get("bias", "none") != "none":
        problems.append(f"trained biases ({config['bias']})")
    return problems


def merge_adapter(checkpoint: Checkpoint, output: Path | str, dtype: str = "bfloat16",
                  trust_remote_code: bool = False) -> Path:
    """Base + adapter merged with PEFT (on the CPU) and saved with the tokenizer as a plain checkpoint."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    output = Path(output)
    model = AutoModelForCausalLM.from_pretrained(checkpoint.model, dtype=getattr(torch, dtype),
                                                 trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(model, checkpoint.adapter).merge_and_unload()
    model.save_pretrained(output)
    load_tokenizer(checkpoint.tokenizer, trust_remote_code).save_pretrained(output)
    return output


MERGED = "nikl-merged"  # temporary merged checkpoints: TMPDIR/.nikl-merged.partial-PID-RANDOM


def merged_folder() -> Path:
    """A new temporary folder for a merged checkpoint, removed when this process exits; those of processes
    killed before they could remove theirs (a merged 7.8B model is 15 GB) are removed first."""
    target = Path(tempfile.gettempdir()) / MERGED
    clear_leftovers(target, ("partial",))
    folder = leftover_name(target, "partial", unique=True)
    folder.mkdir(mode=0o700)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def batch_invariance_supported() -> bool:
    """Compute capability ≥ 8.0 on the first visible GPU (read with NVML: no CUDA context in this process)."""
    try:
        import pynvml
    except ImportError:  # no NVML bindings: leave the mode off
        return False
    try:
        pynvml.nvmlInit()
        major, _ = pynvml.nvmlDeviceGetCudaComputeCapability(pynvml.nvmlDeviceGetHandleByIndex(0))
        return major >= 8
    except pynvml.NVMLError:  # no driver, no GPU: leave the mode off
        return False


def llm_kwargs(model: str, tokenizer: str, dtype: str, decoding: Decoding, settings: VLLMSettings,
               max_model_len: int | None, trust_remote_code: bool, lora_rank: int | None) -> dict[str, Any]:
    """The arguments of ``vllm.LLM`` for this run."""
    kwargs: dict[str, Any] = {
        "model": model, "tokenizer": tokenizer, "dtype": dtype, "trust_remote_code": trust_remote_code,
        "seed": decoding.seed, "gpu_memory_utilization": settings.gpu_memory_utilization,
        "tensor_parallel_size": settings.tensor_parallel_size,
    }
    if max_model_len is not None:
        kwargs["max_model_len"] = max_model_len
    if lora_rank is not None:  # vLLM accepts only some max_lora_rank values: the smallest that fits
        kwargs.update(enable_lora=True, max_lora_rank=min(r for r in VLLM_LORA_RANKS if r >= lora_rank))
    return kwargs


def sampling_kwargs(job: Job, decoding: Decoding, stop_ids: list[int]) -> dict[str, Any]:
    """The arguments of ``vllm.SamplingParams`` for one dialogue: greedy, or seeded per dialogue."""
    return {"n": decoding.per_prompt, "max_tokens": decoding.max_new_tokens, "stop_token_ids": stop_ids,
            "temperature": decoding.temperature if decoding.sampling else 0.0,
            "top_p": decoding.top_p if decoding.sampling else 1.0,
            "seed": row_seed(decoding.seed, job.id, 0) if decoding.sampling else None}


class VLLMEngine:
    """vLLM schedules its own batches, so ``--batch-size`` is only how many prompts go to it per call
    (and per sidecar flush)."""

    backend = "vllm"
    device = "cuda"  # the GPUs of CUDA_VISIBLE_DEVICES (see device_env)

    def __init__(self, checkpoint: Checkpoint, decoding: Decoding, dtype: str, trust_remote_code: bool = False, *,
                 settings: VLLMSettings = VLLMSettings(), merge_lora: bool = False, device: str = "auto"):
        try:
            import vllm  # noqa: F401 - checked before any work
        except ImportError:
            raise UserError(f"--backend vllm needs vLLM{VLLM_RANGE}, which is not installed here, nor in "
                            f"{vllm_venv_origin()}: `make install-vllm` gives it its own environment, which this "
                            "command then runs in (or use --backend hf)") from None
        os.environ.update(device_env(device, settings.tensor_parallel_size, os.environ.get("CUDA_VISIBLE_DEVICES")))
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        self.batch_invariant = decoding.sampling and batch_invariance_supported()
        if self.batch_invariant:
            os.environ.setdefault("VLLM_BATCH_INVARIANT", "1")
        self.checkpoint, self.decoding, self.dtype, self.vllm = checkpoint, decoding, dtype, settings
        self.tokenizer = load_tokenizer(checkpoint.tokenizer, trust_remote_code)
        self.notes: list[str] = []
        model, self.lora, rank = checkpoint.model, None, None
        self.merged = False
        if checkpoint.adapter:
            config = checkpoint.adapter_config or {}
            problems = adapter_problems(config)
            if merge_lora or problems:
                model = str(self._merged_copy(checkpoint, trust_remote_code))
                self.merged = True
                why = "--merge-lora" if merge_lora else f"vLLM cannot serve its {', '.join(problems)}"
                self.notes.append(f"merged the adapter into its base with PEFT ({why}); serving {model}")
            else:
                from vllm.lora.request import LoRARequest

                self.lora, rank = LoRARequest("adapter", 1, checkpoint.adapter), int(config.get("r") or 16)
        self.max_model_len = settings.max_model_len or checkpoint.context_length
        from vllm import LLM

        try:
            self.llm = LLM(**llm_kwargs(model, checkpoint.tokenizer if not self.merged else model, dtype, decoding,
                                        settings, self.max_model_len, trust_remote_code, rank))
        except ValueError as error:  # vLLM's start-up checks: context vs KV-cache memory
            text = str(error)
            if "max_model_len" in text or "KV cache" in text:
                raise UserError(f"vLLM cannot hold {self.max_model_len}-token sequences here ({text.splitlines()[0]}); "
                                "lower --max-model-len or raise --gpu-memory-utilization") from None
            raise
        self.stop_ids = stop_token_ids(self.tokenizer)

    @staticmethod
    def _merged_copy(checkpoint: Checkpoint, trust_remote_code: bool) -> Path:
        return merge_adapter(checkpoint, merged_folder(), "bfloat16", trust_remote_code)

    @property
    def context_length(self) -> int | None:
        return self.max_model_len

    def settings(self) -> dict[str, Any]:
        return {"backend": self.backend, **self.checkpoint.settings(), "merged": self.merged, "dtype": self.dtype,
                "vllm": {"max_model_len": self.max_model_len,
                         "gpu_memory_utilization": self.vllm.gpu_memory_utilization,
                         "tensor_parallel_size": self.vllm.tensor_parallel_size,
                         "batch_invariant": self.batch_invariant}}

    def generate(self, jobs: Sequence[Job]) -> list[list[str]]:
        from vllm import SamplingParams

        params = [SamplingParams(**sampling_kwargs(job, self.decoding, self.stop_ids)) for job in jobs]
        prompts = [{"prompt_token_ids": job.prompt_ids} for job in jobs]
        outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        return texts_of(outputs, self.tokenizer, self.stop_ids)


def texts_of(outputs: Sequence[Any], tokenizer: Any, stop_ids: Sequence[int]) -> list[list[str]]:
    """vLLM's request outputs → our texts, decoded from the token ids as the HF backend decodes."""
    return [[finish_text(tokenizer, choice.token_ids, stop_ids) for choice in output.outputs] for output in outputs]
