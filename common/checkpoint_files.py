"""What a checkpoint directory holds, named once: its config, adapter config, weight and tokenizer files.

Every module that reads, lists, copies or fingerprints a checkpoint's files takes the names (and the readers)
from here: the converter, the inference engine, checkpoint selection, the tokenizer loader, the metrics.
A checkpoint's small JSON files are read once per process while they are unchanged (:func:`read_bytes`), so
resolving a checkpoint, fingerprinting it and loading it do not read ``config.json`` three times.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.io import write_json
from common.paths import looks_like_local_path

CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"  # PEFT and Axolotl write it beside a LoRA adapter's weights
GENERATION_CONFIG = "generation_config.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"  # the shards of a large model, by tensor name
PYTORCH_BIN = "pytorch_model.bin"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# A full model's weights: one file, or an index naming its shards (safetensors first, the older format after).
MODEL_WEIGHTS = (SAFETENSORS, SAFETENSORS_INDEX, PYTORCH_BIN, f"{PYTORCH_BIN}.index.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
TOKENIZER_JSON = "tokenizer.json"  # a fast tokenizer, whole
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
CHAT_TEMPLATE = "chat_template.jinja"
# Every file a Hugging Face tokenizer may consist of (copied along when a checkpoint is converted).
TOKENIZER_FILES = (TOKENIZER_JSON, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, "vocab.json", "merges.txt",
                   "added_tokens.json", "tokenizer.model", CHAT_TEMPLATE)
# Any one of these makes a directory a tokenizer's.
TOKENIZER_MAIN_FILES = (TOKENIZER_JSON, TOKENIZER_CONFIG, "tokenizer.model", "vocab.json")
# The small files whose content says what a checkpoint is (configs, tokenizer, template): hashed, not stat'ed.
DEFINING_FILES = (CONFIG, ADAPTER_CONFIG, GENERATION_CONFIG, TOKENIZER_CONFIG, TOKENIZER_JSON, SPECIAL_TOKENS_MAP,
                  CHAT_TEMPLATE)
_CONFIGS = (CONFIG, ADAPTER_CONFIG, GENERATION_CONFIG)  # small: kept in memory by read_bytes


def has_tokenizer(directory: Path | str) -> bool:
    return any((Path(directory) / name).is_file() for name in TOKENIZER_MAIN_FILES)


def has_weights(directory: Path | str) -> bool:
    """A full model's or an adapter's weights are in ``directory`` (not only a config)."""
    directory = Path(directory)
    return directory.is_dir() and any((directory / name).is_file() for name in (*ADAPTER_WEIGHTS, *MODEL_WEIGHTS))


def is_adapter(directory: Path | str) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file()


def read_bytes(path: Path | str) -> bytes:
    """A file's bytes; a checkpoint's config files are read once per process while their size and modification
    time stay the same."""
    path = Path(path)
    if path.name not in _CONFIGS:
        return path.read_bytes()
    info = path.stat()
    return _read_once(os.path.realpath(path), info.st_size, info.st_mtime_ns)


@lru_cache(maxsize=64)
def _read_once(path: str, size: int, mtime_ns: int) -> bytes:
    return Path(path).read_bytes()


def read_json(path: Path | str) -> dict[str, Any]:
    """A checkpoint's JSON file (``config.json``, ``adapter_config.json`` …) as a dict; missing, not JSON or not an
    object is a :class:`UserError` naming the file."""
    path = Path(path)
    try:
        data = json.loads(read_bytes(path))
    except FileNotFoundError:
        raise UserError(f"{path.parent}: no {path.name}") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def read_config(directory: Path | str) -> dict[str, Any]:
    return read_json(Path(directory) / CONFIG)


def read_adapter_config(directory: Path | str) -> dict[str, Any]:
    return read_json(Path(directory) / ADAPTER_CONFIG)


def write_checkpoint_json(path: Path | str, data: dict[str, Any]) -> None:
    """A checkpoint's JSON file (config, index, tokenizer config) as ``save_pretrained`` writes it: indent 2, keys
    sorted; atomically."""
    write_json(path, data, indent=2, sort_keys=True)


def hub_json(repo_id: str, filename: str) -> dict[str, Any] | None:
    """A JSON file of a hub repo (from the Hugging Face cache, or downloaded when the hub is reachable); ``None``
    when it cannot be had here — no such file or repo, gated, offline and not cached — or is not a JSON object."""
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, filename)
    except hub_errors():
        return None
    return _json_object(path)


def hub_errors() -> tuple[type[Exception], ...]:
    """What a hub download raises when a file cannot be had here: no such repo, revision or file, gated, offline
    and not cached, unreachable (all :class:`OSError` subclasses), or not a valid repo id."""
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    return (OSError, EntryNotFoundError, HFValidationError)


def config_of(name_or_path: str | Path) -> dict[str, Any] | None:
    """``config.json`` of a local checkpoint directory or a hub id, or ``None`` when there is none to read."""
    if looks_like_local_path(name_or_path):
        return _json_object(Path(name_or_path).expanduser() / CONFIG)
    return hub_json(str(name_or_path), CONFIG)


def _json_object(path: Path | str) -> dict[str, Any] | None:
    try:
        data = json.loads(read_bytes(path))
    except (OSError, ValueError):  # not there, not readable, not JSON
        return None
    return data if isinstance(data, dict) else None
