"""``load_engine``: a checkpoint (full dir, LoRA adapter dir or hub id) on the ``hf`` or ``vllm`` backend."""

from __future__ import annotations

from pathlib import Path

from common.devices import resolve_device
from common.errors import UserError
from dataset_builders.tokenizer import load_tokenizer
from generation.checkpoints import resolve_checkpoint, resolve_dtype
from generation.decoding import Decoding
from generation.jobs import Engine

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
) -> Engine:
    """Load ``ckpt`` for generation; every problem a user can fix is a :class:`UserError`."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    checkpoint = resolve_checkpoint(ckpt, base_model)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if backend == "vllm":
        from generation.vllm import VLLMEngine

        return VLLMEngine(checkpoint, decoding, dtype, trust_remote_code)
    from generation.hf import HFEngine, load_hf_model

    tokenizer = load_tokenizer(checkpoint.tokenizer, trust_remote_code)
    try:
        model = load_hf_model(checkpoint, dtype=dtype, device=device, merge_lora=merge_lora,
                              trust_remote_code=trust_remote_code)
    except OSError as error:  # missing or unreadable weight files
        raise UserError(f"cannot load model {str(ckpt)!r}: {error}") from None
    return HFEngine(model, tokenizer, decoding, checkpoint, dtype=dtype, merged=bool(checkpoint.adapter and merge_lora))
