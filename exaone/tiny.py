"""Tiny, randomly initialised EXAONE 3.x checkpoints for CPU tests and the demo, in EXAONE's own hub layout.

:func:`build_tiny_exaone` writes what a user downloads from the hub, at toy size: ``config.json`` with
``model_type: exaone``, ``auto_map`` and EXAONE's key names, ``transformer.h.N.…`` tensors sharded over
several safetensors files with ``model.safetensors.index.json``, and the byte-level BPE tokenizer as the
hub ships it (``tokenizer.json``, ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` with
``tokenizer_class: GPT2Tokenizer`` and the chat template inside, ``special_tokens_map.json``). The
tokenizer is trained locally on the bundled sample dialogues, and its special tokens sit at ids as
awkward as EXAONE-3.0's (pad 0, bos 1, a decoy ``[EOS]`` at 2, the real end of turn ``[|endofturn|]``
at 361), so nothing can get away with assuming a conventional EOS.

:func:`build_tiny_model` is what tests and benchmarks load: that checkpoint turned into the Llama layout
by :func:`exaone.convert.convert`, exactly as a user's download is. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from common.checkpoint_files import (
    CONFIG,
    SAFETENSORS_INDEX,
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    write_checkpoint_json,
)
from common.errors import UserError
from common.files import cannot_write
from dataset_builders.nikl import sample_files
from exaone.convert import convert, staged_directory
from exaone.layout import ARCHITECTURES, EXAONE, EXAONE_AUTO_MAP, tensor_shapes

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
# Where every special token sits. pad 0, bos 1 and [|endofturn|] 361 are EXAONE-3.0's own ids; "[EOS]"
# (a pretraining end-of-text, not the chat one) takes the id 2 that conventional tokenizers give EOS.
TOKEN_IDS = {"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, "[UNK]": 3,
             "[|system|]": 358, "[|user|]": 359, "[|assistant|]": 360, "[|endofturn|]": 361}
MIN_VOCAB = 512

# EXAONE 3.5's published llama3-style RoPE scaling (32k positions from an 8k pretraining context).
LLAMA3_ROPE_SCALING = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}
# Config values that tell the released models apart (everything else: see exaone_config).
SHAPES: dict[str, dict[str, Any]] = {
    "3.0": {"rope_theta": 500000.0, "rope_scaling": None, "tie_word_embeddings": False,
            "max_position_embeddings": 4096},                       # EXAONE-3.0-7.8B-Instruct
    "3.5": {"rope_theta": 1000000.0, "rope_scaling": LLAMA3_ROPE_SCALING, "tie_word_embeddings": False,
            "max_position_embeddings": 32768},                      # EXAONE-3.5-7.8B / 32B-Instruct
    "tied": {"rope_theta": 1000000.0, "rope_scaling": LLAMA3_ROPE_SCALING, "tie_word_embeddings": True,
             "max_position_embeddings": 32768},                     # EXAONE-3.5-2.4B-Instruct: no lm_head
}
HEADS, KV_HEADS = 4, 2
# Widths `tools build-tiny-model` offers (a multiple of 8 as well, check_hidden_size): at most ~36 MB a layer.
HIDDEN_SIZES = (8, 1024)
MAX_LAYERS = 64


def hidden_size_problem(hidden_size: int) -> str | None:
    """What is wrong with ``hidden_size`` for :func:`exaone_config`'s heads, or ``None``: they must divide it into
    even sizes."""
    if hidden_size <= 0 or hidden_size % (2 * HEADS):
        return (f"hidden size {hidden_size}: must be a multiple of {2 * HEADS}, so each of the {HEADS} attention "
                "heads has an even size (rotary embeddings rotate pairs of dimensions)")
    return None


# What a build leaves in its folder: check_replaceable reads it, so a rebuild replaces only a folder it made.
TINY_MARKER = "TINY_MODEL.json"


def corpus_from_nikl(paths: Iterable[Path]) -> list[str]:
    """Every utterance, keyword and summary of the given NIKL files, plus the prompt scaffolding."""
    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import SYSTEM_PROMPTS, user_message

    texts = list(SYSTEM_PROMPTS.values())
    for path in paths:
        for example in load_nikl(path):
            texts.append(user_message(example.conversation, example.subject_keyword))
            if example.output:
                texts.append(example.output)
    return texts


def build_tokenizer(texts: list[str], vocab_size: int = 2000):
    """A byte-level BPE tokenizer trained on ``texts``, with EXAONE's special tokens at :data:`TOKEN_IDS`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB:
        raise ValueError(f"vocab_size {vocab_size}: at least {MIN_VOCAB}, so [|endofturn|] can sit at id 361")
    backend = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(TOKEN_IDS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_move_special_tokens(backend.to_str())),
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    tokenizer.chat_template = EXAONE_CHAT_TEMPLATE
    return tokenizer


def _move_special_tokens(tokenizer_json: str) -> str:
    """The trainer puts special tokens first (ids 0–7); renumber the vocabulary so they sit at TOKEN_IDS.
    BPE merges name tokens by text, so only the ids change."""
    data = json.loads(tokenizer_json)
    vocab = data["model"]["vocab"]
    others = iter(sorted((token for token in vocab if token not in TOKEN_IDS), key=vocab.__getitem__))
    by_id = {index: token for token, index in TOKEN_IDS.items()}
    data["model"]["vocab"] = {by_id.get(index) or next(others): index for index in range(len(vocab))}
    for entry in data["added_tokens"]:
        entry["id"] = TOKEN_IDS[entry["content"]]
    return json.dumps(data, ensure_ascii=False)


def save_hub_tokenizer(tokenizer, directory: Path, *, model_max_length: int) -> None:
    """Write the tokenizer files the EXAONE 3.x hub repos ship (not what ``save_pretrained`` writes today)."""
    backend = tokenizer.backend_tokenizer
    backend.save(str(directory / TOKENIZER_JSON))
    backend.model.save(str(directory))  # vocab.json + merges.txt
    added = {str(index): {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True}
             for token, index in sorted(TOKEN_IDS.items(), key=lambda item: item[1])}
    special_map = {**SPECIAL_TOKENS, "additional_special_tokens": ROLE_TOKENS}
    write_checkpoint_json(directory / TOKENIZER_CONFIG, {
        "add_bos_token": False, "added_tokens_decoder": added, **special_map,
        "chat_template": EXAONE_CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length, "tokenizer_class": "GPT2Tokenizer",
    })
    write_checkpoint_json(directory / SPECIAL_TOKENS_MAP, special_map)


def exaone_config(shape: str, *, vocab_size: int, hidden_size: int, num_layers: int,
                  max_position_embeddings: int | None = None, head_dim: int | None = None,
                  initializer_range: float = 0.02) -> dict[str, Any]:
    """A ``config.json`` as EXAONE 3.x's hub repos have it, at toy size."""
    if shape not in SHAPES:
        raise ValueError(f"shape {shape!r}: choose from {', '.join(SHAPES)}")
    if problem := hidden_size_problem(hidden_size):
        raise UserError(problem)
    config = {
        **SHAPES[shape],
        "activation_function": "silu", "architectures": ARCHITECTURES[EXAONE], "attention_dropout": 0.0,
        "auto_map": EXAONE_AUTO_MAP, "embed_dropout": 0.0, "hidden_size": hidden_size,
        "initializer_range": initializer_range, "intermediate_size": hidden_size * 2, "layer_norm_epsilon": 1e-5,
        "model_type": EXAONE, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "num_layers": num_layers,
        "torch_dtype": "float32", "transformers_version": "4.45.2", "use_cache": True, "vocab_size": vocab_size,
        "pad_token_id": TOKEN_IDS["[PAD]"], "bos_token_id": TOKEN_IDS["[BOS]"],
        "eos_token_id": TOKEN_IDS["[|endofturn|]"],
    }
    if max_position_embeddings is not None:
        config["max_position_embeddings"] = max_position_embeddings
    if head_dim is not None:  # only when it is not hidden_size / num_attention_heads
        config["head_dim"] = head_dim
    return config


def random_weights(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Every tensor of ``config``'s EXAONE checkpoint, EXAONE names, in module order: N(0, initializer_range)
    matrices, RMSNorm weights around 1 (not exactly 1, so a swapped norm would show), the [PAD] embedding zero."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    tied = config["tie_word_embeddings"]
    weights = {}
    for name, shape in tensor_shapes(config, tied=tied, where="tiny model").items():
        if len(shape) == 1:
            weights[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            weights[name] = config["initializer_range"] * torch.randn(shape, generator=generator)
    weights["transformer.wte.weight"][config["pad_token_id"]] = 0.0
    return weights


def write_sharded(weights: dict[str, Any], directory: Path, num_shards: int) -> None:
    """``weights`` over ``num_shards`` files of similar size, named and indexed as the hub names them. Each
    file is written with a plain ``open()`` (safetensors' ``save_file`` creates it 0600): the umask's mode,
    like the converted shards, and a full disk is an ``OSError``."""
    from safetensors.torch import save

    sizes = {name: tensor.numel() * tensor.element_size() for name, tensor in weights.items()}
    total, names = sum(sizes.values()), list(weights)
    if not 1 <= num_shards <= len(names):
        raise ValueError(f"num_shards {num_shards}: between 1 and {len(names)}")
    groups: list[list[str]] = [[]]
    filled = 0
    for position, name in enumerate(names):
        groups[-1].append(name)
        filled += sizes[name]
        left = len(names) - position - 1
        if left and len(groups) < num_shards and (filled >= total * len(groups) / num_shards
                                                  or left == num_shards - len(groups)):
            groups.append([])
    weight_map = {}
    for number, group in enumerate(groups, 1):
        file = f"model-{number:05d}-of-{num_shards:05d}.safetensors"
        (directory / file).write_bytes(save({name: weights[name] for name in group}, metadata={"format": "pt"}))
        weight_map.update(dict.fromkeys(group, file))
    write_checkpoint_json(directory / SAFETENSORS_INDEX, {"metadata": {"total_size": total}, "weight_map": weight_map})


def build_tiny_exaone(
    output_dir: Path | str,
    *,
    shape: str = "3.0",
    data_paths: Iterable[Path] | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int = 2000,
    seed: int = 0,
    max_position_embeddings: int | None = None,
    head_dim: int | None = None,
    initializer_range: float = 0.02,
    num_shards: int = 2,
) -> Path:
    """Write a tiny random EXAONE 3.x checkpoint in its own hub layout to ``output_dir`` (replacing it) and
    return the path. ``shape``: ``3.0`` (default), ``3.5`` (llama3 RoPE scaling, 32k positions) or ``tied``.
    ``initializer_range`` is the weights' standard deviation: tests raise it so that attention (and with it
    every position encoding detail) moves the logits far more than their tolerance."""
    output_dir = Path(output_dir)
    data_paths = list(data_paths) if data_paths is not None else sample_files()
    check_replaceable(output_dir, data_paths)
    tokenizer = build_tokenizer(corpus_from_nikl(data_paths), vocab_size=vocab_size)
    config = exaone_config(shape, vocab_size=len(tokenizer), hidden_size=hidden_size, num_layers=num_layers,
                           max_position_embeddings=max_position_embeddings, head_dim=head_dim,
                           initializer_range=initializer_range)
    try:
        with staged_directory(output_dir) as staging:
            write_sharded(random_weights(config, seed), staging, num_shards)
            write_checkpoint_json(staging / CONFIG, config)
            save_hub_tokenizer(tokenizer, staging, model_max_length=config["max_position_embeddings"])
            write_checkpoint_json(staging / TINY_MARKER, {
                "what": "tiny random EXAONE 3.x checkpoint in its hub layout", "shape": shape, "seed": seed,
                "hidden_size": hidden_size, "num_layers": num_layers, "vocab_size": len(tokenizer)})
    except OSError as error:  # a full, read-only or forbidden disk
        raise cannot_write(output_dir, error) from None
    return output_dir


def check_replaceable(output_dir: Path, data_paths: Iterable[Path]) -> None:
    """``output_dir`` is replaced by a build: refuse when an ``--input`` file lies inside it, or when it holds
    files that no earlier build wrote (a folder that is not a tiny model)."""
    inside = Path(os.path.realpath(output_dir))
    for path in data_paths:
        if inside in Path(os.path.realpath(path)).parents:
            raise UserError(f"--input {path} is inside {output_dir}, which the build replaces; move the data or "
                            "choose another --output-dir")
    built = (output_dir / TINY_MARKER).is_file() or (exaone_layout_sibling(output_dir) / TINY_MARKER).is_file()
    if output_dir.is_dir() and any(output_dir.iterdir()) and not built:
        raise UserError(f"--output-dir {output_dir} holds files `tools build-tiny-model` did not write, and the "
                        "build replaces the folder; choose a new or empty folder")


def exaone_layout_sibling(output_dir: Path | str) -> Path:
    """Where :func:`build_tiny_model` keeps the EXAONE-layout original of ``output_dir``."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + "-exaone-layout")


def build_tiny_model(output_dir: Path | str, **options: Any) -> Path:
    """A tiny EXAONE 3.x checkpoint converted to the Llama layout in ``output_dir`` (loadable by
    ``AutoModelForCausalLM`` natively); returns the path. The EXAONE-layout original it was converted from
    stays next to it (:func:`exaone_layout_sibling`). ``options``: those of :func:`build_tiny_exaone`."""
    if options.get("data_paths") is not None:
        options["data_paths"] = list(options["data_paths"])
    check_replaceable(Path(output_dir), options.get("data_paths") or sample_files())
    original = build_tiny_exaone(exaone_layout_sibling(output_dir), **options)
    try:
        convert(original, output_dir, force=True, progress=False)
    except BaseException:  # half a build is no build: the original written just now goes too
        shutil.rmtree(original, ignore_errors=True)
        raise
    return Path(output_dir)
