"""``load_engine``: a checkpoint (full dir, LoRA adapter dir or hub id) on the ``hf`` or ``vllm`` backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from common.devices import resolve_device
from common.errors import UserError
from common.tokenizer import load_tokenizer
from exaone.layout import exaone3_problem
from generation.checkpoints import resolve_checkpoint, resolve_dtype
from generation.decoding import Decoding
from generation.jobs import Engine

if TYPE_CHECKING:  # pragma: no cover - typing only
    from generation.vllm import VLLMSettings

BACKENDS = ("hf", "vllm")


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
    vllm: "VLLMSettings | None" = None,
) -> Engine:
    """Load ``ckpt`` for generation; every problem a user can fix is a :class:`UserError`. ``vllm`` holds
    the vLLM backend's own settings (giving them with the hf backend is an error)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    checkpoint = resolve_checkpoint(ckpt, base_model)
    if backend == "vllm":
        from generation.vllm import VLLMEngine, VLLMSettings

        # No torch.cuda call here: vLLM's engine process must be the first to touch CUDA (see generation.vllm).
        return VLLMEngine(checkpoint, decoding, resolve_dtype(dtype, "cuda"), trust_remote_code,
                          settings=vllm or VLLMSettings(), merge_lora=merge_lora, device=device)
    if vllm is not None:
        raise UserError("--max-model-len, --gpu-memory-utilization and --tensor-parallel-size apply only with "
                        "--backend vllm")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    from generation.hf import HFEngine, load_hf_model

    if problem := exaone3_problem(checkpoint.model, checkpoint.config):  # remote code too old for this transformers
        raise UserError(problem)
    config = checkpoint.transformers_config()  # config.json as read by resolve_checkpoint: not read again
    tokenizer = load_tokenizer(checkpoint.tokenizer, trust_remote_code, config=config)
    from safetensors import SafetensorError

    try:
        model = load_hf_model(checkpoint, dtype=dtype, device=device, merge_lora=merge_lora,
                              trust_remote_code=trust_remote_code, config=config)
    except (OSError, SafetensorError) as error:  # missing, unreadable or corrupt weight files
        raise UserError(f"cannot load model {str(ckpt)!r}: {error}") from None
    return HFEngine(model, tokenizer, decoding, checkpoint, dtype=dtype, merged=bool(checkpoint.adapter and merge_lora))
