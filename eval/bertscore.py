"""BERTScore F1 as the task computes it: ``bert-base-multilingual-cased``, layer 9, no idf weighting, no
baseline rescaling; the corpus score is the mean of the per-example F1.

The computation is ``bert_score`` 0.3.13's own (``bert_cos_score_idf``: greedy cosine matching, [CLS]
and [SEP] weighted 0); only the loading is done here, because ``BERTScorer`` trips offline and on local
paths: it needs ``num_layers`` for any path, loads any name containing "t5" as a T5 model, and trusts
the tokenizer's ``model_max_length``, which a locally built tokenizer may leave unset (then long texts
overflow the position embeddings). Texts that are empty after stripping score 0, as in bert_score,
without calling the tokenizer (transformers 5 removed the helper bert_score uses for them).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

from common.checkpoint_files import config_of
from common.devices import resolve_device
from eval.loading import BERTSCORE_BATCH_SIZE
from eval.loading import BERTSCORE_MODEL as DEFAULT_MODEL
from eval.loading import MetricUnavailable, check_tokenizer, describe_load_error, require_metric_model


# config.json values that identify a local copy of bert-base-multilingual-cased, whatever its folder name.
_MBERT_CASED = {"model_type": "bert", "vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12}


def default_layer(model: str) -> int | None:
    """bert_score's layer for a model id, also found through a local path that names it (a directory
    called ``bert-base-multilingual-cased``, a Hugging Face cache folder ``models--org--name``) or a
    directory whose ``config.json`` is bert-base-multilingual-cased's."""
    from bert_score.utils import model2layers

    names = [model, *Path(model).parts]
    names += [name[len("models--"):].replace("--", "/") for name in names if name.startswith("models--")]
    for name in names:
        if name in model2layers:
            return model2layers[name]
    values = config_of(model) if Path(model).is_dir() else None
    if values and all(values.get(key) == value for key, value in _MBERT_CASED.items()):
        return model2layers[DEFAULT_MODEL]
    return None


class BertScorer:
    """Loads the model once; ``score`` gives per-pair F1 on the 0–1 scale."""

    def __init__(self, model: str = DEFAULT_MODEL, num_layers: int | None = None, *,
                 device: str | None = None, batch_size: int = BERTSCORE_BATCH_SIZE) -> None:
        require_metric_model("bertscore", model, "--bertscore-model")
        layers = num_layers if num_layers is not None else default_layer(model)
        if layers is None:
            raise MetricUnavailable(
                f"bertscore: no known layer for {model!r}; pass --bertscore-layers N "
                f"(the official {DEFAULT_MODEL} uses 9)"
            )
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            encoder = AutoModel.from_pretrained(model)
        except (OSError, ValueError) as error:
            raise MetricUnavailable(describe_load_error("bertscore", model, "--bertscore-model", error)) from None
        blocks = getattr(getattr(encoder, "encoder", None), "layer", None)
        if blocks is None:
            raise MetricUnavailable(f"bertscore: {model!r} is not a BERT-style encoder (no encoder.layer)")
        if not 1 <= layers <= len(blocks):
            raise MetricUnavailable(f"bertscore: layer {layers} out of range for {model!r} (1–{len(blocks)})")
        # bert_score's get_model: drop the layers above the one whose output is used.
        encoder.encoder.layer = blocks[:layers]
        limit = getattr(encoder.config, "max_position_embeddings", None)
        if limit and (self.tokenizer.model_max_length or 0) > limit:
            self.tokenizer.model_max_length = limit
        check_tokenizer(lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"],
                        self.tokenizer.unk_token_id, f"bertscore: tokenizer of {model!r}")
        self.device = resolve_device(device)
        self.model = encoder.eval().to(self.device)
        self.layers = layers
        self.batch_size = batch_size
        self.name = model

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        """BERTScore F1 of each prediction against its reference (0–1)."""
        from bert_score.utils import bert_cos_score_idf

        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
        scores = [0.0] * len(predictions)
        keep = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
        if not keep:
            return scores
        idf = defaultdict(lambda: 1.0)  # BERTScorer.score with idf=False
        idf[self.tokenizer.sep_token_id] = 0
        idf[self.tokenizer.cls_token_id] = 0
        table = bert_cos_score_idf(
            self.model, [references[i] for i in keep], [predictions[i] for i in keep], self.tokenizer, idf,
            verbose=False, batch_size=self.batch_size, device=self.device,
        )
        for index, value in zip(keep, table[:, 2].tolist()):
            scores[index] = value
        return scores
