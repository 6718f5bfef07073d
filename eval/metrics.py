"""The task's official score, in process: ROUGE-1 F, BERTScore F1 and BLEURT-20, and their mean.

    official = (ROUGE-1 F + BERTScore F1 + BLEURT) / 3 × 100

each term the plain mean over examples: ROUGE as the organisers compute it (``eval.rouge``), BERTScore
with ``bert-base-multilingual-cased`` layer 9 and no rescaling (``eval.bertscore``), BLEURT-20's raw
score (``eval.bleurt``). ROUGE-2 and ROUGE-L are reported too. Everything here is on the 0–100 scale.

The model-based metrics need local weights; when they cannot be loaded (offline, no cache) the metric is
skipped with the reason, the rest is computed, and ``official`` is ``None``. Other commands call
:func:`pair_scorer` (DPO pair building) and :func:`rouge1_similarity` (MBR reranking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Sequence

from common.errors import UserError
from common.text import normalisation_twins, same_id_in_two_forms
from eval.loading import BERTSCORE_MODEL, BLEURT_MODEL, MetricUnavailable
from eval.registry import (
    LABELS,
    METRICS,
    MODEL_SCORERS,
    NAMES,
    OFFICIAL_PARTS,
    ROUGE_KEYS,
    SCORERS,
    computed_by,
    metric_name,
    metric_names,
    parts,
    scorers_for,
)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from dataset_builders.dpo import ScoreFn

@lru_cache(maxsize=2)
def _bertscore(model: str, layers: int | None, device: str | None, batch_size: int | None):
    from eval.bertscore import BertScorer

    return BertScorer(model, layers, device=device, **({"batch_size": batch_size} if batch_size else {}))


@lru_cache(maxsize=2)
def _bleurt(model: str, device: str | None, batch_size: int | None):
    from eval.bleurt import BleurtScorer

    return BleurtScorer(model, device=device, **({"batch_size": batch_size} if batch_size else {}))


# ---- per-pair scoring (0–1 inside, 0–100 outside) ----------------------------------------------------


RawFn = Callable[[Sequence[str], Sequence[str]], dict[str, list[float]]]


def _load(scorer: str, *, rouge_keys: Sequence[str] = ROUGE_KEYS, bertscore_model: str | None = None,
          bertscore_layers: int | None = None, bleurt_model: str | None = None, device: str | None = None,
          batch_size: int | None = None) -> tuple[RawFn, str | None]:
    """A function giving per-pair values on the 0–1 scale by metric name, and the model it uses. Loads the
    model now, so a scorer that cannot run raises :class:`MetricUnavailable` before any scoring. ``rouge``
    computes ``rouge_keys`` (all three variants unless told)."""
    from eval import rouge

    if scorer == "rouge":
        return (lambda p, r: rouge.rouge_f(p, r, rouge_keys)), None
    if scorer == "bertscore":
        bert = _bertscore(bertscore_model or BERTSCORE_MODEL, bertscore_layers, device, batch_size)
        return (lambda p, r: {"bertscore": bert.score(p, r)}), f"{bert.name} (layer {bert.layers})"
    if scorer == "bleurt":
        bleurt = _bleurt(bleurt_model or BLEURT_MODEL, device, batch_size)
        return (lambda p, r: {"bleurt": bleurt.score(p, r)}), bleurt.name
    raise ValueError(f"unknown scorer {scorer!r}; choose from {', '.join(SCORERS)}")


def load_models(metrics: Sequence[str], *, bertscore_model: str = BERTSCORE_MODEL, bertscore_layers: int | None = None,
                bleurt_model: str = BLEURT_MODEL, device: str | None = None, batch_size: int | None = None) -> None:
    """Load the models ``metrics`` (names of :mod:`eval.registry`) need now (kept for :func:`score_pairs` with the
    same options): a model that cannot be loaded is a :class:`MetricUnavailable` before any long work, not after."""
    for scorer in scorers_for(metrics):
        if scorer in MODEL_SCORERS:
            _load(scorer, bertscore_model=bertscore_model, bertscore_layers=bertscore_layers, bleurt_model=bleurt_model,
                  device=device, batch_size=batch_size)


def pair_scorer(metric: str, bertscore_model: str | None = None, bleurt_model: str | None = None, *,
                bertscore_layers: int | None = None, device: str | None = None) -> "ScoreFn":
    """A batched scoring function for any metric of :mod:`eval.registry` (``official``: the per-pair mean of
    its three parts), 0–100. Raises :class:`MetricUnavailable` (a :class:`~common.errors.UserError`) right away
    when a needed model cannot be loaded."""
    scorers = {part: _load(METRICS[part].scorer, rouge_keys=(part,), bertscore_model=bertscore_model,
                           bertscore_layers=bertscore_layers, bleurt_model=bleurt_model, device=device)[0]
               for part in parts(metric_name(metric))}

    def score(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        columns = [fn(predictions, references)[part] for part, fn in scorers.items()]
        return [100 * sum(values) / len(values) for values in zip(*columns)]

    return score


def rouge1_similarity() -> Callable[[str, str], float]:
    """ROUGE-1 F (0–100) between two texts, as the task computes it; tokenization is cached, so scoring
    every candidate against every other tokenizes each once. Symmetric."""
    from eval.rouge import prepare, rouge_n

    def similarity(a: str, b: str) -> float:
        return 100 * rouge_n(prepare(a), prepare(b), 1).fmeasure

    return similarity


# ---- corpus scoring -----------------------------------------------------------------------------------


@dataclass
class ScoreReport:
    """Per-example values (0–1) of the computed metrics, and why the others are missing."""

    ids: list[str]
    values: dict[str, list[float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ids)

    def score(self, key: str) -> float | None:
        """Corpus score on 0–100: the plain mean over examples; ``None`` when not computed."""
        from eval.rouge import corpus_mean

        if key == "official":
            parts = [self.score(part) for part in OFFICIAL_PARTS]
            return None if None in parts else sum(parts) / len(parts)
        values = self.values.get(key)
        return None if values is None else 100 * corpus_mean(values)

    def example(self, index: int) -> dict[str, object]:
        row: dict[str, object] = {"id": self.ids[index]}
        for key in NAMES:
            if key != "official":
                row[key] = 100 * self.values[key][index] if key in self.values else None
        parts = [row[part] for part in OFFICIAL_PARTS]
        row["official"] = None if None in parts else sum(parts) / len(parts)
        return row

    def to_json(self) -> dict[str, object]:
        """The ``--report`` file: scores (0–100, ``null`` when skipped), n, reasons, models, per example."""
        return {**{key: self.score(key) for key in NAMES}, "n": self.n, "skipped": dict(self.skipped),
                "models": dict(self.models), "per_example": [self.example(i) for i in range(self.n)]}

    def lines(self) -> list[str]:
        """The printed table, then one line per skipped metric."""
        out = [f"{'metric':<10} {'score':>7}"]
        for key in NAMES:
            value = self.score(key)
            text = f"{value:7.2f}" if value is not None else f"{'—':>7}"
            note = "  mean of ROUGE-1, BERTScore, BLEURT" if key == "official" else ""
            if key in self.models:
                note = f"  {self.models[key]}"
            out.append(f"{LABELS[key]:<10} {text}{note}")
        out.append(f"{'n':<10} {self.n:>7}")
        out += [f"skipped {key}: {reason}" for key, reason in self.skipped.items()]
        return out


def align_by_id(predictions: Sequence[tuple[str, str]], references: Sequence[tuple[str, str]],
                prediction_name: str = "predictions", reference_name: str = "references"
                ) -> tuple[list[str], list[str], list[str]]:
    """Match ``(id, text)`` predictions to references by id: ``(ids, predictions, references)`` in the
    references' order. Missing, extra or duplicate ids raise one :class:`UserError` naming them."""

    def shown(values: list[str]) -> str:
        more = f" … (+{len(values) - 5} more)" if len(values) > 5 else ""
        return ", ".join(repr(value) for value in values[:5]) + more

    problems = []
    for name, pairs in ((prediction_name, predictions), (reference_name, references)):
        seen: set[str] = set()
        duplicates = [i for i, _ in pairs if i in seen or seen.add(i)]
        if duplicates:
            problems.append(f"duplicate id(s) in {name}: {shown(list(dict.fromkeys(duplicates)))}")
    by_id = dict(predictions)
    reference_ids = [i for i, _ in references]
    missing = [i for i in reference_ids if i not in by_id]
    known = set(reference_ids)
    extra = [i for i, _ in predictions if i not in known]
    if twins := normalisation_twins(extra, missing):
        extra_id, missing_id = twins[0]
        problems.append(f"{len(twins)} id(s) of {prediction_name} differ from those of {reference_name} only in "
                        f"their Unicode form: {same_id_in_two_forms(extra_id, missing_id)}")
        paired = {i for pair in twins for i in pair}
        missing = [i for i in missing if i not in paired]
        extra = [i for i in extra if i not in paired]
    if missing:
        problems.append(f"{len(missing)} id(s) of {reference_name} missing from {prediction_name}: {shown(missing)}")
    if extra:
        problems.append(f"{len(extra)} id(s) of {prediction_name} not in {reference_name}: {shown(extra)}")
    if problems:
        raise UserError("; ".join(problems))
    return reference_ids, [by_id[i] for i in reference_ids], [text for _, text in references]


def score_pairs(predictions: Sequence[str], references: Sequence[str], metrics: Sequence[str] = NAMES, *,
                ids: Sequence[str] | None = None, bertscore_model: str = BERTSCORE_MODEL,
                bertscore_layers: int | None = None, bleurt_model: str = BLEURT_MODEL,
                device: str | None = None, batch_size: int | None = None,
                progress: Callable[[str], None] = lambda message: None,
                required: Sequence[str] = ()) -> ScoreReport:
    """Score aligned prediction/reference lists with the scorers that compute ``metrics`` (names of
    :mod:`eval.registry`; every metric a scorer computes is reported: ROUGE-1, -2 and -L together).

    A model metric whose weights cannot be loaded is recorded in ``skipped`` with the reason and the
    others are still computed — unless it is in ``required`` (its model was named explicitly): then it
    raises :class:`MetricUnavailable`. Every metric not asked for is in ``skipped`` too, and ``official``
    when a part is missing.
    """
    wanted, required = scorers_for(metric_names(metrics)), scorers_for(required)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("nothing to score")
    ids = list(ids) if ids is not None else [str(index) for index in range(len(predictions))]
    if len(ids) != len(predictions):
        raise ValueError(f"{len(ids)} ids for {len(predictions)} pairs")
    report = ScoreReport(ids)
    for scorer in SCORERS:
        if scorer not in wanted:
            report.skipped.update({key: "not requested" for key in computed_by(scorer)})
            continue
        progress(f"scoring {scorer} …")
        try:
            compute, model = _load(scorer, bertscore_model=bertscore_model, bertscore_layers=bertscore_layers,
                                   bleurt_model=bleurt_model, device=device, batch_size=batch_size)
        except MetricUnavailable as error:
            if scorer in required:
                raise
            report.skipped[scorer] = str(error).removeprefix(f"{scorer}: ")
            continue
        report.values.update(compute(list(predictions), list(references)))
        if model:
            report.models[scorer] = model
    missing = [LABELS[part] for part in OFFICIAL_PARTS if part not in report.values]
    if missing:
        report.skipped["official"] = f"needs {', '.join(missing)}"
    return report
