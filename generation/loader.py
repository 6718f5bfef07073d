"""``load_engine``: a resolved checkpoint (full model, LoRA adapter or hub id) on the ``hf`` or ``vllm`` backend."""

from __future__ import annotations

from common.devices import resolve_device
from common.errors import UserError
from common.tokenizer import load_tokenizer
from exaone.layout import exaone3_problem
from generation.checkpoints import Checkpoint, resolve_dtype
from generation.decoding import Decoding
from generation.jobs import Engine
from generation.options import InferenceOptions


def load_engine(checkpoint: Checkpoint, decoding: Decoding = Decoding(),
                options: InferenceOptions = InferenceOptions()) -> Engine:
    """Load ``checkpoint`` (:func:`generation.checkpoints.resolve_checkpoint`: its configs are not read again) for
    generation, as ``options`` say (backend, dtype, device, adapter merging, remote code, vLLM's settings); every
    problem a user can fix is a :class:`UserError`."""
    if options.backend == "vllm":
        from generation.vllm import VLLMEngine

        # No torch.cuda call here: vLLM's engine process must be the first to touch CUDA (see generation.vllm).
        return VLLMEngine(checkpoint, decoding, resolve_dtype(options.dtype, "cuda"), options.trust_remote_code,
                          settings=options.vllm_settings(), merge_lora=options.merge_lora, device=options.device)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    from generation.hf import HFEngine, load_hf_model

    if problem := exaone3_problem(checkpoint.model, checkpoint.config):  # remote code too old for this transformers
        raise UserError(problem)
    config = checkpoint.transformers_config()  # config.json as read by resolve_checkpoint: not read again
    tokenizer = load_tokenizer(checkpoint.tokenizer, options.trust_remote_code, config=config)
    from safetensors import SafetensorError

    try:
        model = load_hf_model(checkpoint, dtype=dtype, device=device, merge_lora=options.merge_lora,
                              trust_remote_code=options.trust_remote_code, config=config)
    except (OSError, SafetensorError) as error:  # missing, unreadable or corrupt weight files
        raise UserError(f"cannot load model {checkpoint.name!r}: {error}") from None
    merged = bool(checkpoint.adapter and options.merge_lora)
    return HFEngine(model, tokenizer, decoding, checkpoint, dtype=dtype, merged=merged)
