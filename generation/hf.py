"""The transformers backend: prompts prefilled one at a time, then decoded together by ``model.generate`` with
left padding; outputs independent of batching."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from generation.checkpoints import Checkpoint, model_context_length
from generation.decoding import Decoding, GumbelSampler, finish_text, row_seed, stop_token_ids, trim_at_stop
from generation.jobs import Job


class HFEngine:
    """Greedy (or seeded-sampling) generation over batches of prompt token ids."""

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

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def context_length(self) -> int | None:
        """Positions the model was trained for (prompt + generated tokens must fit)."""
        return model_context_length(self.model.config, self.tokenizer)

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

        Returns each row's new tokens up to its first stop token. A batch of several rows is prefilled one
        distinct prompt at a time (:meth:`prefill`) and then decoded together, left-padded.
        """
        from transformers import LogitsProcessorList

        device = self.model.device
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        processors = LogitsProcessorList()
        if seeds is not None:
            processors.append(GumbelSampler(seeds, self.decoding.temperature, self.decoding.top_p, device))
        alone = len(prompts) > 1 and min(map(len, prompts)) > 1
        cache = self.prefill(prompts, width) if alone else None
        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                                     generation_config=self.generation_config(), logits_processor=processors)
        return [trim_at_stop(row[width:].tolist(), self.stop_ids) for row in output]

    def prefill(self, prompts: Sequence[Sequence[int]], width: int):
        """The KV cache of every prompt but its last token, left-padded to ``width - 1`` positions, one row per
        prompt — computed one distinct prompt at a time, so ``generate`` only has the last prompt token of each
        row left to run before it decodes the batch together.

        Why not let ``generate`` prefill the padded batch: left padding makes transformers build a 4-D
        (rows, 1, width, width) attention mask, and with a mask SDPA gives up its causal kernel — on the CPU it
        turns the mask into floats and computes every masked score, several times the work of the prompts alone
        (docs/benchmarks.md). Alone, a prompt needs no mask at all. The candidates of one dialogue
        (identical prompts) are prefilled once.
        """
        from transformers import DynamicCache

        rows_of: dict[tuple[int, ...], list[int]] = {}
        for row, prompt in enumerate(prompts):
            rows_of.setdefault(tuple(prompt), []).append(row)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        for prompt, rows in rows_of.items():
            ids = torch.tensor([prompt[:-1]], device=self.model.device)
            cache = self.model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
            for index, layer in enumerate(cache.layers):
                if index == len(keys):  # the first prompt: the padded batch tensors (zeros where it is padding)
                    heads, dim = layer.keys.shape[1], layer.keys.shape[-1]
                    keys.append(layer.keys.new_zeros(len(prompts), heads, width - 1, dim))
                    values.append(layer.values.new_zeros(len(prompts), heads, width - 1, layer.values.shape[-1]))
                keys[index][rows, :, width - len(prompt):] = layer.keys
                values[index][rows, :, width - len(prompt):] = layer.values
            del cache
        return DynamicCache(list(zip(keys, values)), config=self.model.config)

    def generate(self, jobs: Sequence[Job]) -> list[list[str]]:
        n = self.decoding.per_prompt
        prompts = [job.prompt_ids for job in jobs for _ in range(n)]
        seeds = ([row_seed(self.decoding.seed, job.id, k) for job in jobs for k in range(n)]
                 if self.decoding.sampling else None)
        texts = [finish_text(self.tokenizer, ids, self.stop_ids) for ids in self.generate_ids(prompts, seeds)]
        return [texts[i * n:(i + 1) * n] for i in range(len(jobs))]


def load_hf_model(checkpoint: Checkpoint, *, dtype: str, device: str, merge_lora: bool,
                  trust_remote_code: bool = False, config: Any = None):
    """The model of ``checkpoint`` on ``device`` in ``dtype``; an adapter is applied (and merged if asked).
    ``config``: the model's config when already loaded (:meth:`Checkpoint.transformers_config`)."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype), "trust_remote_code": trust_remote_code}
    if config is not None:
        kwargs["config"] = config
    if device != "cpu":
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(checkpoint.model, **kwargs)
    if checkpoint.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, checkpoint.adapter)
        if merge_lora:
            model = model.merge_and_unload()
    return model.to(device) if device == "cpu" else model
