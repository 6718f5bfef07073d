"""The vLLM backend (``pip install -e ".[gpu]"``): the same interface, vLLM's own scheduling."""

from __future__ import annotations

from typing import Any, Sequence

from common.errors import UserError
from dataset_builders.tokenizer import load_tokenizer
from generation.checkpoints import Checkpoint
from generation.decoding import Decoding, postprocess, row_seed, stop_token_ids
from generation.jobs import Job

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


class VLLMEngine:
    """vLLM schedules its own batches, so ``--batch-size`` is only how many prompts go to it per call
    (and per sidecar flush)."""

    backend = "vllm"

    def __init__(self, checkpoint: Checkpoint, decoding: Decoding, dtype: str, trust_remote_code: bool = False):
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("--backend vllm needs vLLM, which is not installed: pip install '.[gpu]' "
                            "(or use --backend hf)") from None

        self.checkpoint, self.decoding, self.dtype = checkpoint, decoding, dtype
        self.tokenizer = load_tokenizer(checkpoint.tokenizer, trust_remote_code)
        self.lora = None
        lora_kwargs: dict[str, Any] = {}
        if checkpoint.adapter:
            from peft import PeftConfig
            from vllm.lora.request import LoRARequest

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
