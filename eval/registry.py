"""The metrics, named once: every command and module takes metric names, labels and scorers from here.

=============  ===========  ==========================================================================
name           label        what
=============  ===========  ==========================================================================
``rouge1``     ROUGE-1      ROUGE-1 F as the organisers compute it (:mod:`eval.rouge`)
``rouge2``     ROUGE-2      ROUGE-2 F (computed with ROUGE-1, for diagnosis)
``rougeL``     ROUGE-L      summary-level ROUGE-L F (computed with ROUGE-1, for diagnosis)
``bertscore``  BERTScore    BERTScore F1, bert-base-multilingual-cased layer 9 (:mod:`eval.bertscore`)
``bleurt``     BLEURT       BLEURT-20 (:mod:`eval.bleurt`)
``official``   official     the leaderboard's score: the mean of ROUGE-1, BERTScore and BLEURT
=============  ===========  ==========================================================================

The same spelling works everywhere: ``tools score --metrics``, ``select-checkpoint --metric`` and
``build-dpo-data --metric``, and the library functions. Older spellings stay accepted as aliases
(:data:`ALIASES`), and case does not matter. Every value is on the 0–100 scale outside ``eval/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from common.errors import UserError


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    scorer: str | None  # the scorer that computes it (one scorer computes all ROUGE variants); None: official


ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
OFFICIAL_PARTS = ("rouge1", "bertscore", "bleurt")
METRICS = {metric.name: metric for metric in (
    Metric("rouge1", "ROUGE-1", "rouge"),
    Metric("rouge2", "ROUGE-2", "rouge"),
    Metric("rougeL", "ROUGE-L", "rouge"),
    Metric("bertscore", "BERTScore", "bertscore"),
    Metric("bleurt", "BLEURT", "bleurt"),
    Metric("official", "official", None),
)}
NAMES = tuple(METRICS)  # every metric, in the order reports list them
LABELS = {name: metric.label for name, metric in METRICS.items()}
SCORERS = ("rouge", "bertscore", "bleurt")  # what computes them; the last two load a model
MODEL_SCORERS = ("bertscore", "bleurt")
ALIASES = {"rouge": "rouge1"}  # `tools score --metrics rouge`, the spelling before there was one
DEFAULT_METRIC = "rouge1"  # what checkpoint selection and DPO ranking use unless told: needs no model weights


def lookup(name: str) -> str | None:
    """The metric's name as :data:`NAMES` spells it (aliases and any case accepted), or ``None``."""
    spelled = {key.lower(): key for key in NAMES}
    key = name.strip().lower()
    return spelled.get(key) or ALIASES.get(key)


def metric_name(name: str) -> str:
    """:func:`lookup`, raising a :class:`UserError` that lists the names for an unknown one."""
    found = lookup(name)
    if found is None:
        raise UserError(f"unknown metric {name!r}; choose from {', '.join(NAMES)}")
    return found


def metric_names(names: str | Iterable[str]) -> tuple[str, ...]:
    """Several metrics (a comma-separated string or a list), spelled as :data:`NAMES`, each once, in order."""
    if isinstance(names, str):
        names = names.split(",")
    found = tuple(dict.fromkeys(metric_name(name) for name in names if name.strip()))
    if not found:
        raise UserError(f"no metric given; choose from {', '.join(NAMES)}")
    return found


def parts(name: str) -> tuple[str, ...]:
    """The metrics ``name`` is computed from: itself, or the official score's three parts."""
    return OFFICIAL_PARTS if name == "official" else (name,)


def scorers_for(names: Iterable[str]) -> tuple[str, ...]:
    """The scorers that compute ``names``, in :data:`SCORERS` order."""
    needed = {METRICS[part].scorer for name in names for part in parts(metric_name(name))}
    return tuple(scorer for scorer in SCORERS if scorer in needed)


def computed_by(scorer: str) -> tuple[str, ...]:
    """The metrics one scorer computes (``rouge``: ROUGE-1, ROUGE-2 and ROUGE-L together)."""
    return tuple(name for name, metric in METRICS.items() if metric.scorer == scorer)
