"""What ``--ckpt`` points at: a full checkpoint, a LoRA adapter on a base model, or a hub id.

A local dir is an adapter when it holds ``adapter_config.json`` (PEFT and Axolotl both write it); a dir
with ``config.json`` is a full model; anything that is not a local path is a hub id (itself possibly an
adapter). The tokenizer and chat template come from the checkpoint dir, else from the adapter's base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from common.checkpoint_files import (
    ADAPTER_CONFIG,
    CONFIG,
    DEFINING_FILES,
    WEIGHT_SUFFIXES,
    config_of,
    has_tokenizer,
    hub_json,
    is_adapter,
    read_adapter_config,
    read_bytes,
    read_config,
)
from common.errors import UserError
from common.paths import MAKES_BASE_MODEL, MAKES_CHECKPOINT, require_local


@dataclass(frozen=True)
class Checkpoint:
    """Where the weights, the adapter (if any) and the tokenizer come from, and the configs read on the way
    (the model's ``config.json``: ``None`` when it could not be read here, e.g. a hub id offline). ``given``: the
    ``--ckpt`` it was resolved from, as written (for messages)."""

    model: str
    adapter: str | None = None
    tokenizer: str = ""
    config: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    adapter_config: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    given: str | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """What the user called it: ``--ckpt`` as given, else the adapter or the model."""
        return self.given or self.adapter or self.model

    def settings(self) -> dict[str, Any]:
        """Where the weights are and what they are (:func:`fingerprint`): a sidecar of a run on other
        weights in the same folder is refused."""
        return self._settings

    @cached_property
    def _settings(self) -> dict[str, Any]:
        weights = {"model": fingerprint(self.model)}
        if self.adapter:
            weights["adapter"] = fingerprint(self.adapter)
        if self.tokenizer not in (self.model, self.adapter):
            weights["tokenizer"] = fingerprint(self.tokenizer)
        return {"model": self.model, "adapter": self.adapter, "weights": weights}

    @property
    def context_length(self) -> int | None:
        """The model's context from its ``config.json`` (``None`` when unknown), without loading it."""
        return model_context_length(SimpleNamespace(**self.config)) if self.config else None

    def transformers_config(self):
        """The model's config as transformers' class for it, built from what was read (so ``from_pretrained``
        does not read ``config.json`` again); ``None`` — transformers reads it itself — for a model type it does not
        know or a config that points at the checkpoint's own code (``auto_map``)."""
        from transformers import CONFIG_MAPPING

        model_type = (self.config or {}).get("model_type")
        if model_type not in CONFIG_MAPPING or "auto_map" in self.config:
            return None
        return CONFIG_MAPPING[model_type].from_dict(dict(self.config), name_or_path=self.model)


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
        if file.name in DEFINING_FILES or file.name.endswith(".index.json"):
            out[file.name] = hashlib.sha256(read_bytes(file)).hexdigest()[:16]
        elif file.name.endswith(WEIGHT_SUFFIXES):
            info = file.stat()
            out[file.name] = f"{info.st_size} bytes, mtime {info.st_mtime_ns}"
    return out


def _adapter_base(config: dict[str, Any], where: str, base_model: str | None) -> str:
    """The adapter's base: ``--base-model``, else the ``base_model_name_or_path`` it records — a relative one
    relative to the current directory (as training wrote it: :mod:`common.paths`)."""
    if base_model:
        base = require_local(base_model, "--base-model", MAKES_BASE_MODEL)
    else:
        base = config.get("base_model_name_or_path")
        if not base or not isinstance(base, str):
            raise UserError(f"{where}: {ADAPTER_CONFIG} names no base_model_name_or_path; pass --base-model")
        base = require_local(base, f"{where}: its base model (base_model_name_or_path)",
                             "run from the folder training ran in, or pass --base-model DIR")
    return str(Path(base).resolve()) if Path(base).exists() else base


def resolve_checkpoint(ckpt: str | Path, base_model: str | None = None) -> Checkpoint:
    """Resolve ``--ckpt`` (and ``--base-model`` for an adapter) without loading any weights; the model's
    ``config.json`` and the adapter's ``adapter_config.json`` are read here, once. A path-like value that is
    not on disk is reported before any hub call."""
    given = str(ckpt)
    if base_model:
        require_local(base_model, "--base-model", MAKES_BASE_MODEL)
    path = Path(ckpt)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"--ckpt {ckpt}: not a directory")
        path = path.resolve()
        if is_adapter(path):
            adapter_config = read_adapter_config(path)
            base = _adapter_base(adapter_config, str(path / ADAPTER_CONFIG), base_model)
            return Checkpoint(base, str(path), str(path) if has_tokenizer(path) else base, config=config_of(base),
                              adapter_config=adapter_config, given=given)
        if not (path / CONFIG).is_file():
            raise UserError(f"--ckpt {ckpt}: no {CONFIG} (full model) or {ADAPTER_CONFIG} (LoRA adapter)")
        return Checkpoint(str(path), None, str(path), config=read_config(path), given=given)
    require_local(str(ckpt), "--ckpt", MAKES_CHECKPOINT)
    adapter_config = hub_json(str(ckpt), ADAPTER_CONFIG)  # a hub id: an adapter repo has one
    if adapter_config is None:  # not an adapter (or not reachable): a full model, which the loader will fetch
        return Checkpoint(given, None, given, config=config_of(given), given=given)
    base = _adapter_base(adapter_config, str(ckpt), base_model)
    return Checkpoint(base, given, base, config=config_of(base), adapter_config=adapter_config, given=given)


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
