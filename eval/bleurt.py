"""BLEURT-20 in plain PyTorch: a minimal model class that loads the ``lucadiliello/BLEURT-20`` port.

BLEURT-20 is a RemBERT-style BERT encoder (token embeddings smaller than the hidden size, projected up
before the first layer) with a one-unit regression head on the pooled [CLS] state; the score is that
raw output (roughly 0–1; the task reports the mean ×100). The ``bleurt-pytorch`` package that ships the port does not import
under transformers 5, so this module re-implements its ``BleurtForSequenceClassification`` inference
path with the *same parameter names*, and a converted checkpoint directory loads as it is:

- ``config.json`` — the port's ``BleurtConfig`` fields (``vocab_size``, ``embedding_size``,
  ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``,
  ``hidden_act``, ``max_position_embeddings``, ``type_vocab_size``, ``layer_norm_eps``, ``pad_token_id``);
- weights in ``model.safetensors`` or ``pytorch_model.bin`` (or their sharded ``*.index.json``) with
  keys ``bleurt.embeddings.*``, ``bleurt.encoder.embedding_projection.*``,
  ``bleurt.encoder.layer.N.{attention.self.{query,key,value},attention.output.{dense,LayerNorm},
  intermediate.dense,output.{dense,LayerNorm}}.*``, ``bleurt.pooler.dense.*``, ``classifier.*``;
- the tokenizer: ``spm.model`` (SentencePiece, BLEURT-20) or any Hugging Face tokenizer files
  (WordPiece BLEURT checkpoints, the tests' tiny model).

Inputs are built as the original TensorFlow BLEURT does (``bleurt/encoding.py``): ``[CLS] reference
[SEP] candidate [SEP]``, segment ids 0 then 1, and when the pair is longer than 512 tokens the longer
side loses its last token until it fits (the candidate on ties). Activations follow the config's
``hidden_act`` as the port does ("gelu" is the exact erf form; TensorFlow BLEURT used the tanh
approximation — a small numerical difference the port has too, not measured here).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from common.checkpoint_files import CONFIG, PYTORCH_BIN, SAFETENSORS, hub_errors, read_config, write_checkpoint_json
from common.devices import resolve_device
from common.paths import looks_like_local_path
from eval.loading import BLEURT_BATCH_SIZE
from eval.loading import BLEURT_MODEL as DEFAULT_MODEL
from eval.loading import MetricUnavailable, check_tokenizer, describe_load_error, require_metric_model

MAX_LENGTH = 512  # BLEURT-20's max_seq_length
# Buffers the port registers (and may have saved) that this class recomputes.
_IGNORED_KEYS = ("bleurt.embeddings.position_ids", "bleurt.embeddings.token_type_ids")


@dataclass
class BleurtConfig:
    """The fields of bleurt-pytorch's ``BleurtConfig`` that inference needs (same names, same defaults)."""

    vocab_size: int = 30522
    embedding_size: int | None = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "BleurtConfig":
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_dict(self) -> dict:
        """The port's ``config.json`` (with ``model_type`` and ``architectures``)."""
        return {"model_type": "bleurt", "architectures": ["BleurtForSequenceClassification"], "num_labels": 1,
                **asdict(self)}


# ---- the model: module and parameter names are the port's ------------------------------------------


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _DenseAddNorm(nn.Module):
    """``dense`` then ``LayerNorm`` over the residual sum (BERT's post-norm output blocks)."""

    def __init__(self, d_in: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(states) + residual)


class _SelfAttention(nn.Module):
    def __init__(self, config: BleurtConfig) -> None:
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of "
                             f"num_attention_heads {config.num_attention_heads}")
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = states.shape

        def split(projection: nn.Linear) -> torch.Tensor:
            return projection(states).view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)

        context = F.scaled_dot_product_attention(split(self.query), split(self.key), split(self.value),
                                                 attn_mask=mask)
        return context.transpose(1, 2).reshape(batch, length, hidden)


class _Attention(nn.Module):
    def __init__(self, config: BleurtConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(config)
        self.output = _DenseAddNorm(config.hidden_size, config.hidden_size, config.layer_norm_eps)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(states, mask), states)


class _Layer(nn.Module):
    def __init__(self, config: BleurtConfig) -> None:
        super().__init__()
        from transformers.activations import ACT2FN

        self.attention = _Attention(config)
        self.intermediate = _Dense(config.hidden_size, config.intermediate_size)
        self.output = _DenseAddNorm(config.intermediate_size, config.hidden_size, config.layer_norm_eps)
        self.activation = ACT2FN[config.hidden_act]

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention(states, mask)
        return self.output(self.activation(self.intermediate.dense(attended)), attended)


class _Embeddings(nn.Module):
    def __init__(self, config: BleurtConfig) -> None:
        super().__init__()
        size = config.embedding_size or config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, size)
        self.LayerNorm = nn.LayerNorm(size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        summed = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
                  + self.position_embeddings(positions))
        return self.LayerNorm(summed)


class _Encoder(nn.Module):
    def __init__(self, config: BleurtConfig) -> None:
        super().__init__()
        if config.embedding_size is not None:
            self.embedding_projection = nn.Linear(config.embedding_size, config.hidden_size)
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "embedding_projection"):
            states = self.embedding_projection(states)
        for layer in self.layer:
            states = layer(states, mask)
        return states


class BleurtModel(nn.Module):
    def __init__(self, config: BleurtConfig) -> None:
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)
        self.pooler = _Dense(config.hidden_size, config.hidden_size)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """The pooled output: tanh(dense(state of the first token))."""
        mask = attention_mask.bool()[:, None, None, :]  # True = attend
        states = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        return torch.tanh(self.pooler.dense(states[:, 0]))


class BleurtForSequenceClassification(nn.Module):
    """BLEURT: encoder + one-unit regression head. ``forward`` returns the raw scores, shape (batch,)."""

    def __init__(self, config: BleurtConfig) -> None:
        super().__init__()
        self.config = config
        self.bleurt = BleurtModel(config)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.bleurt(input_ids, token_type_ids, attention_mask)).squeeze(-1)

    def save(self, directory: Path | str) -> Path:
        """Write ``config.json`` + ``model.safetensors`` in the port's layout (for tests and conversions)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_checkpoint_json(directory / CONFIG, self.config.to_dict())
        save_file({key: value.contiguous() for key, value in self.state_dict().items()}, str(directory / SAFETENSORS))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> "BleurtForSequenceClassification":
        """Load a converted checkpoint; a missing or unexpected parameter is an error naming it."""
        directory = Path(directory)
        if not (directory / CONFIG).is_file():
            raise MetricUnavailable(f"bleurt: {directory} has no {CONFIG}")
        config = BleurtConfig.from_dict(read_config(directory))
        state = {key: value for key, value in _read_state_dict(directory).items() if key not in _IGNORED_KEYS}
        with torch.device("meta"):
            model = cls(config)
        expected = set(model.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise MetricUnavailable(
                f"bleurt: {directory} is not a BLEURT checkpoint in the bleurt-pytorch layout "
                f"(missing: {', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(unexpected[:3]) or 'none'})"
            )
        try:
            model.load_state_dict(state, assign=True)
        except RuntimeError as error:  # shapes that disagree with config.json
            raise MetricUnavailable(f"bleurt: {directory}: weights do not fit config.json: "
                                    f"{str(error).strip().splitlines()[-1].strip()}") from None
        return model.float().eval()


def _read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """Weights from ``model.safetensors`` / ``pytorch_model.bin``, single or sharded."""
    from safetensors.torch import load_file

    def read(path: Path) -> dict[str, torch.Tensor]:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)

    for name in (SAFETENSORS, PYTORCH_BIN):
        if (directory / name).is_file():
            return read(directory / name)
        index = directory / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(read(directory / shard))
            return state
    raise MetricUnavailable(f"bleurt: {directory} has no {SAFETENSORS} or {PYTORCH_BIN}")


# ---- inputs -------------------------------------------------------------------------------------------


@dataclass
class PairEncoder:
    """``[CLS] reference [SEP] candidate [SEP]`` with BLEURT's truncation and segment ids."""

    tokenize: Callable[[str], list[int]]
    cls_id: int
    sep_id: int
    pad_id: int
    max_length: int = MAX_LENGTH

    def encode(self, reference: str, candidate: str) -> tuple[list[int], list[int]]:
        """Input ids and segment ids for one pair (``encoding.encode_example`` + ``_truncate_seq_pair``)."""
        ref, cand = list(self.tokenize(reference)), list(self.tokenize(candidate))
        budget = self.max_length - 3
        while len(ref) + len(cand) > budget:
            if len(ref) > len(cand):
                ref.pop()
            else:
                cand.pop()
        ids = [self.cls_id, *ref, self.sep_id, *cand, self.sep_id]
        return ids, [0] * (len(ref) + 2) + [1] * (len(cand) + 1)


def load_pair_encoder(directory: Path, max_length: int = MAX_LENGTH) -> PairEncoder:
    """SentencePiece (``spm.model``, as BLEURT-20 ships) when present — TensorFlow BLEURT's tokenizer,
    pieces looked up by id, special tokens being pieces of the model — else the directory's Hugging
    Face tokenizer, used only to split text (special tokens are placed here)."""
    spm_path = directory / "spm.model"
    if spm_path.is_file():
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
        ids = {piece: processor.piece_to_id(piece) for piece in ("[CLS]", "[SEP]", "[PAD]")}
        lost = [piece for piece, index in ids.items() if index == processor.unk_id()]
        if lost:
            raise MetricUnavailable(f"bleurt: {spm_path} has no piece {', '.join(lost)}")
        tokenize, unk_id = processor.encode, processor.unk_id()
        encoder = PairEncoder(tokenize, ids["[CLS]"], ids["[SEP]"], ids["[PAD]"], max_length)
    else:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
        except (OSError, ValueError) as error:
            raise MetricUnavailable(f"bleurt: cannot load the tokenizer in {directory}: "
                                    f"{str(error).splitlines()[0]}") from None

        def tokenize(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        unk_id = tokenizer.unk_token_id
        encoder = PairEncoder(tokenize, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                              max_length)
    check_tokenizer(tokenize, unk_id, f"bleurt: tokenizer in {directory}")
    return encoder


def resolve_model_dir(name_or_path: str) -> Path:
    """A local directory as it is; anything else is a Hugging Face repo id, taken from the local cache
    (or downloaded when the hub is reachable and ``HF_HUB_OFFLINE`` is not set)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    require_metric_model("bleurt", name_or_path, "--bleurt-model")
    if looks_like_local_path(name_or_path):  # there, but not a directory
        raise MetricUnavailable(f"bleurt: --bleurt-model {name_or_path}: not a directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, allow_patterns=[
            CONFIG, "*.safetensors", "*.bin", "*.index.json", "spm.model", "tokenizer*", "vocab*",
            "special_tokens_map.json",
        ]))
    except hub_errors() as error:
        raise MetricUnavailable(describe_load_error("bleurt", name_or_path, "--bleurt-model", error)) from None


class BleurtScorer:
    """Loads the checkpoint once; ``score`` gives raw BLEURT scores per pair (batched, GPU when present)."""

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None,
                 batch_size: int = BLEURT_BATCH_SIZE) -> None:
        directory = resolve_model_dir(model)
        self.device = resolve_device(device)
        self.model = BleurtForSequenceClassification.load(directory).to(self.device)
        self.encoder = load_pair_encoder(directory, min(MAX_LENGTH, self.model.config.max_position_embeddings))
        self.batch_size = batch_size
        self.name = model

    @torch.inference_mode()
    def score(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        encoded = [self.encoder.encode(ref, pred) for pred, ref in zip(predictions, references)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]), reverse=True)  # less padding
        scores = [0.0] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = len(encoded[batch[0]][0])
            ids = torch.full((len(batch), width), self.encoder.pad_id, dtype=torch.long)
            types = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                input_ids, type_ids = encoded[index]
                ids[row, :len(input_ids)] = torch.tensor(input_ids)
                types[row, :len(type_ids)] = torch.tensor(type_ids)
                mask[row, :len(input_ids)] = 1
            values = self.model(ids.to(self.device), types.to(self.device), mask.to(self.device))
            for index, value in zip(batch, values.float().cpu().tolist()):
                scores[index] = value
        return scores

