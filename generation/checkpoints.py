"""What ``--ckpt`` points at: a full checkpoint, a LoRA adapter on a base model, or a hub id.

A local dir is an adapter when it holds ``adapter_config.json`` (PEFT and Axolotl both write it); a dir
with ``config.json`` is a full model; anything that is not a local path is a hub id (itself possibly an
adapter). The tokenizer and chat template come from the checkpoint dir, else from the adapter's base.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.paths import MAKES_BASE_MODEL, MAKES_CHECKPOINT, require_local


@dataclass(frozen=True)
class Checkpoint:
    """Where the weights, the adapter (if any) and the tokenizer come from."""

    model: str
    adapter: str | None = None
    tokenizer: str = ""

    def settings(self) -> dict[str, Any]:
        """Where the weights are and what they are (:func:`fingerprint`): a sidecar of a run on other
        weights in the same folder is refused."""
        weights = {"model": fingerprint(self.model)}
        if self.adapter:
            weights["adapter"] = fingerprint(self.adapter)
        if self.tokenizer not in (self.model, self.adapter):
            weights["tokenizer"] = fingerprint(self.tokenizer)
        return {"model": self.model, "adapter": self.adapter, "weights": weights}


# Small files whose content defines a checkpoint (hashed); weight files are identified by size and time.
_DEFINING_FILES = ("config.json", "adapter_config.json", "generation_config.json", "tokenizer_config.json",
                   "tokenizer.json", "special_tokens_map.json", "chat_template.jinja")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def fingerprint(name_or_path: str) -> dict[str, Any]:
    """What a checkpoint directory *is*, cheaply even for 15 GB: a SHA-256 of each small defining file
    (configs, weight index, tokenizer) and the size and modification time of each weight file. A hub id
    that is not a local directory is recorded as itself (a cached snapshot cannot be told apart cheaply)."""
    import hashlib

    path = Path(name_or_path)
    if not path.is_dir():
        return {"hub": str(name_or_path)}
    out: dict[str, Any] = {}
    for file in sorted(path.iterdir()):
        if not file.is_file():
            continue
        if file.name in _DEFINING_FILES or file.name.endswith(".index.json"):
            out[file.name] = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
        elif file.name.endswith(_WEIGHT_SUFFIXES):
            info = file.stat()
            out[file.name] = f"{info.st_size} bytes, mtime {info.st_mtime_ns}"
    return out


def has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()


def _adapter_base(config: dict[str, Any], where: str, base_model: str | None) -> str:
    """The adapter's base: ``--base-model``, else the ``base_model_name_or_path`` it records — a relative one
    relative to the current directory (as training wrote it: :mod:`common.paths`)."""
    if base_model:
        base = require_local(base_model, "--base-model", MAKES_BASE_MODEL)
    else:
        base = config.get("base_model_name_or_path")
        if not base or not isinstance(base, str):
            raise UserError(f"{where}: adapter_config.json names no base_model_name_or_path; pass --base-model")
        base = require_local(base, f"{where}: its base model (base_model_name_or_path)",
                             "run from the folder training ran in, or pass --base-model DIR")
    return str(Path(base).resolve()) if Path(base).exists() else base


def resolve_checkpoint(ckpt: str | Path, base_model: str | None = None) -> Checkpoint:
    """Resolve ``--ckpt`` (and ``--base-model`` for an adapter) without loading any weights; a path-like
    value that is not on disk is reported before any hub call."""
    if base_model:
        require_local(base_model, "--base-model", MAKES_BASE_MODEL)
    path = Path(ckpt)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"--ckpt {ckpt}: not a directory")
        path = path.resolve()
        adapter_config = path / "adapter_config.json"
        if adapter_config.is_file():
            try:
                config = json.loads(adapter_config.read_text(encoding="utf-8"))
            except ValueError as error:
                raise UserError(f"{adapter_config}: not valid JSON ({error})") from None
            base = _adapter_base(config, str(adapter_config), base_model)
            return Checkpoint(base, str(path), str(path) if has_tokenizer(path) else base)
        if not (path / "config.json").is_file():
            raise UserError(f"--ckpt {ckpt}: no config.json (full model) or adapter_config.json (LoRA adapter)")
        return Checkpoint(str(path), None, str(path))
    require_local(str(ckpt), "--ckpt", MAKES_CHECKPOINT)
    try:  # a hub id: an adapter repo has an adapter_config.json
        from peft import PeftConfig

        config = PeftConfig.from_pretrained(str(ckpt)).to_dict()
    except Exception:  # noqa: BLE001 - not an adapter (or unreachable): load it as a full model
        return Checkpoint(str(ckpt), None, str(ckpt))
    base = _adapter_base(config, str(ckpt), base_model)
    return Checkpoint(base, str(ckpt), base)


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: bfloat16 on CUDA, float32 elsewhere (CPU half precision is slow and inexact)."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


def model_context_length(config: Any, tokenizer: Any = None) -> int | None:
    """The model's context in tokens: ``max_position_embeddings`` of its config, else the tokenizer's
    ``model_max_length`` when that is a real limit (transformers uses a huge number for "none")."""
    for owner, key in ((config, "max_position_embeddings"), (getattr(config, "text_config", None), "max_position_embeddings"),
                       (tokenizer, "model_max_length")):
        value = getattr(owner, key, None) if owner is not None else None
        if isinstance(value, int) and 0 < value < 10**7:
            return value
    return None
