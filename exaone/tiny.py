"""A tiny, randomly initialised EXAONE-shaped model for CPU tests and the demo.

EXAONE 3.x is Llama-shaped, so this is a ``LlamaForCausalLM`` with a byte-level BPE tokenizer
trained locally on the bundled sample dialogues, carrying EXAONE's special tokens (``[BOS]``,
``[PAD]``, ``[UNK]``, ``[|system|]``, ``[|user|]``, ``[|assistant|]``, ``[|endofturn|]`` as EOS)
and EXAONE 3.x's chat template, so ``[|endofturn|]`` handling is exercised for real. Nothing is
downloaded; everything loads back with ``from_pretrained(path)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from common.checkout import sample_files

# The chat template shipped with LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct and EXAONE-3.5 (verbatim).
EXAONE_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '[|system|][|endofturn|]\\n' }}{% endif %}{{ '[|' + message['role'] + '|]' + message['content'] }}"
    "{% if message['role'] == 'user' %}{{ '\\n' }}{% else %}{{ '[|endofturn|]\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '[|assistant|]' }}{% endif %}"
)
SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "bos_token": "[BOS]",
    "eos_token": "[|endofturn|]",
    "unk_token": "[UNK]",
}
ROLE_TOKENS = ["[|system|]", "[|user|]", "[|assistant|]"]


def corpus_from_nikl(paths: Iterable[Path]) -> list[str]:
    """Every utterance, keyword and summary of the given NIKL files, plus the prompt scaffolding."""
    from dataset_builders.prompt import SYSTEM_PROMPTS, user_message
    from dataset_builders.nikl import load_nikl

    texts = list(SYSTEM_PROMPTS.values())
    for path in paths:
        for example in load_nikl(path):
            texts.append(user_message(example.conversation, example.subject_keyword))
            if example.output:
                texts.append(example.output)
    return texts


def build_tokenizer(texts: list[str], vocab_size: int = 2000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [SPECIAL_TOKENS["pad_token"], SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"],
                SPECIAL_TOKENS["unk_token"], *ROLE_TOKENS]
    backend = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=4096,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    tokenizer.chat_template = EXAONE_CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    output_dir: Path | str,
    *,
    data_paths: Iterable[Path] | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 2000,
    seed: int = 0,
) -> Path:
    """Write a tiny random EXAONE-shaped model + tokenizer to ``output_dir`` and return the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    data_paths = list(data_paths) if data_paths is not None else sample_files()
    tokenizer = build_tokenizer(corpus_from_nikl(data_paths), vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_theta=500000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "TINY_MODEL.json").write_text(
        json.dumps({"what": "tiny random EXAONE-shaped test model", "seed": seed,
                    "hidden_size": hidden_size, "num_layers": num_layers, "vocab_size": len(tokenizer)}) + "\n"
    )
    return output_dir
