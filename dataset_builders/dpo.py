"""Preference pairs without human labels: rank the SFT model's own samples by the task metric.

Input: NIKL examples (with reference summaries) and sampled candidates
(``{"id", "candidates": [...]}`` as ``tools infer --num-candidates`` writes them). Each candidate is
scored against the reference with a batched scoring function (0–100 scale, higher is better), then
paired by a strategy:

- ``ref-vs-worst``: chosen = the reference summary, rejected = the lowest-scoring candidate;
- ``best-vs-worst``: chosen = the best candidate, rejected = the worst;
- ``all-pairs-margin``: every candidate pair whose score gap is at least ``min_margin``, widest gaps
  first, at most ``max_pairs_per_prompt`` per prompt.

Empty and degenerate candidates (repetition loops) are dropped before pairing, as are pairs whose
two texts are identical or whose scores tie. Human pairs (``{"id", "chosen", "rejected"}``) replace the
automatic pairs of their prompt. Output rows are Axolotl ``chat_template.default`` DPO rows::

    {"id", "messages": [system, user], "chosen": {"role": "assistant", "content": ...},
     "rejected": {"role": "assistant", "content": ...}, "score_chosen": x, "score_rejected": y}
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from common.errors import UserError
from common.io import read_jsonl
from common.text import normalisation_twins, same_id_in_two_forms
from dataset_builders.candidates import unusable_reason
from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder

STRATEGIES = ("ref-vs-worst", "best-vs-worst", "all-pairs-margin")

# Scores a batch of (prediction, reference) pairs: one value per pair, 0–100, higher is better
# (:func:`eval.metrics.pair_scorer` makes one for any metric).
ScoreFn = Callable[[Sequence[str], Sequence[str]], list[float]]


@dataclass(frozen=True)
class Pair:
    chosen: str
    rejected: str
    score_chosen: float
    score_rejected: float

    @property
    def margin(self) -> float:
        return self.score_chosen - self.score_rejected


@dataclass
class DpoStats:
    prompts: int = 0
    prompts_with_pairs: int = 0
    human_pairs: int = 0
    margins: list[float] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    kept_out: list[str] = field(default_factory=list)  # ids that lost pairs to the length limit

    def lines(self, kept_out_file: object = None) -> list[str]:
        """The summary; ``kept_out_file``: where every id that lost pairs to the length limit is listed."""
        margins = self.margins
        out = [
            f"prompts: {self.prompts}",
            f"prompts with pairs: {self.prompts_with_pairs}",
            f"pairs: {len(margins)} (human: {self.human_pairs})",
            f"mean margin: {statistics.fmean(margins):.2f}" if margins else "mean margin: n/a",
        ]
        if self.kept_out:
            shown = ", ".join(self.kept_out[:10]) + (f" and {len(self.kept_out) - 10} more" if len(self.kept_out) > 10 else "")
            out.append(f"prompts that lost pairs to the length limit: {len(self.kept_out)} ({shown}"
                       + (f"; all listed in {kept_out_file}" if kept_out_file else "") + ")")
        return out + self.drop_lines()

    def drop_lines(self) -> list[str]:
        """One line per reason something was dropped (``dropped: none`` when nothing was)."""
        return [f"dropped {reason}: {count}" for reason, count in sorted(self.dropped.items())] or ["dropped: none"]


def usable_candidates(candidates: Iterable[str], stats: DpoStats) -> list[str]:
    """Strip, then drop empty, degenerate and duplicate candidates, counting each reason."""
    kept: list[str] = []
    for candidate in candidates:
        text = candidate.strip()
        reason = unusable_reason(text)
        if reason:
            stats.dropped[f"{reason} candidate"] += 1
        elif text in kept:
            stats.dropped["duplicate candidate"] += 1
        else:
            kept.append(text)
    return kept


def make_pairs(
    reference: str,
    scored: list[tuple[str, float]],
    strategy: str,
    stats: DpoStats,
    *,
    reference_score: float,
    min_margin: float,
    max_pairs_per_prompt: int,
) -> list[Pair]:
    """Pairs for one prompt from its scored candidates (``[(text, score)]``)."""
    ranked = sorted(scored, key=lambda item: item[1], reverse=True)  # stable: ties keep sample order
    if strategy == "ref-vs-worst":
        if not ranked:
            stats.dropped["no usable candidate"] += 1
            return []
        worst = ranked[-1]
        candidates = [Pair(reference.strip(), worst[0], reference_score, worst[1])]
    elif strategy == "best-vs-worst":
        if len(ranked) < 2:
            stats.dropped["fewer than 2 usable candidates"] += 1
            return []
        candidates = [Pair(ranked[0][0], ranked[-1][0], ranked[0][1], ranked[-1][1])]
    elif strategy == "all-pairs-margin":
        if len(ranked) < 2:
            stats.dropped["fewer than 2 usable candidates"] += 1
            return []
        candidates = sorted(
            (Pair(a[0], b[0], a[1], b[1]) for a, b in itertools.combinations(ranked, 2)),
            key=lambda pair: pair.margin,
            reverse=True,
        )
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")

    pairs = []
    for pair in candidates:
        if pair.chosen == pair.rejected:
            stats.dropped["identical texts"] += 1
        elif pair.margin <= 0:
            stats.dropped["tied scores"] += 1
        elif pair.margin < min_margin:
            stats.dropped["margin below --min-margin"] += 1
        elif strategy == "all-pairs-margin" and len(pairs) >= max_pairs_per_prompt:
            stats.dropped["over --max-pairs-per-prompt"] += 1
        else:
            pairs.append(pair)
    return pairs


def dpo_row(example_id: str, messages: list[dict[str, str]], pair: Pair) -> dict[str, Any]:
    return {
        "id": example_id,
        "messages": messages,
        "chosen": {"role": "assistant", "content": pair.chosen},
        "rejected": {"role": "assistant", "content": pair.rejected},
        "score_chosen": round(pair.score_chosen, 4),
        "score_rejected": round(pair.score_rejected, 4),
    }


def build_dpo_rows(
    examples: Sequence[Example],
    candidates: dict[str, list[str]],
    score_fn: ScoreFn,
    builder: PromptBuilder,
    *,
    strategy: str = "ref-vs-worst",
    min_margin: float = 0.0,
    max_pairs_per_prompt: int = 4,
    human: dict[str, list[tuple[str, str]]] | None = None,
    stats: DpoStats | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda items: items,
    max_seq_len: int | None = None,
) -> tuple[list[dict[str, Any]], DpoStats]:
    """All DPO rows, in example order. Scores every text of every prompt in one batched call.

    With ``max_seq_len`` the prompt of each example is truncated so that prompt + the longer of chosen and
    rejected fits (as Axolotl counts DPO lengths); a pair whose answers alone do not fit is dropped and
    counted, never left for Axolotl to drop silently."""
    stats = stats or DpoStats()
    human = human or {}
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")

    # 1. Collect what to score, so a model-based metric sees one big batch.
    plans: list[tuple[Example, list[str]]] = []
    texts: list[str] = []
    references: list[str] = []
    for example in examples:
        stats.prompts += 1
        if example.id in human:
            pending = [text for pair in human[example.id] for text in pair]
        else:
            if example.id not in candidates:
                stats.dropped["no candidates for id"] += 1
                plans.append((example, []))
                continue
            pending = usable_candidates(candidates[example.id], stats)
            if strategy == "ref-vs-worst":
                pending = [example.output.strip(), *pending]
        plans.append((example, pending))
        texts += pending
        references += [example.output] * len(pending)
    scores = iter(score_fn(texts, references)) if texts else iter(())

    # 2. Pair and render.
    rows = []
    for example, pending in progress(plans):
        scored = [(text, next(scores)) for text in pending]
        if not scored:
            continue
        if example.id in human:
            pairs = [Pair(scored[i][0], scored[i + 1][0], scored[i][1], scored[i + 1][1]) for i in range(0, len(scored), 2)]
            stats.human_pairs += len(pairs)
        else:
            reference_score = scored.pop(0)[1] if strategy == "ref-vs-worst" else 0.0
            pairs = make_pairs(
                example.output,
                scored,
                strategy,
                stats,
                reference_score=reference_score,
                min_margin=min_margin,
                max_pairs_per_prompt=max_pairs_per_prompt,
            )
        fitted = _fit(builder, example, pairs, max_seq_len, stats)
        if fitted is None:
            continue
        messages, pairs = fitted
        stats.prompts_with_pairs += 1
        for pair in pairs:
            stats.margins.append(pair.margin)
            rows.append(dpo_row(example.id, messages, pair))
    return rows, stats


def _fit(builder: PromptBuilder, example: Example, pairs: list[Pair], max_seq_len: int | None,
         stats: DpoStats) -> tuple[list[dict[str, str]], list[Pair]] | None:
    """The prompt messages for ``pairs`` within ``max_seq_len``, and the pairs that fit (all of them, unless
    some pair's answers alone are too long: those are dropped and counted)."""
    if not pairs:
        return None

    def fit(chosen: list[Pair]):
        return builder.fit(example, [text for pair in chosen for text in (pair.chosen, pair.rejected)], max_seq_len)

    fitted = fit(pairs)
    if fitted is None:
        kept = [pair for pair in pairs if fit([pair]) is not None]
        stats.dropped["pair longer than --max-seq-len"] += len(pairs) - len(kept)
        stats.kept_out.append(example.id)
        fitted = fit(kept) if kept else None
        pairs = kept
    return None if fitted is None else (fitted[0].messages, pairs)


def _known_id(row: dict[str, Any], where: str, known_ids: set[str]) -> str:
    """The row's ``id``, which must be a non-empty string naming an example of the data file."""
    example_id = row.get("id")
    if not isinstance(example_id, str) or not example_id:
        raise UserError(f"{where}: field 'id' must be a non-empty string")
    if example_id not in known_ids:
        if twins := normalisation_twins([example_id], known_ids):
            raise UserError(f"{where}: id {example_id!r} is not in the data file as written: "
                            f"{same_id_in_two_forms(*twins[0])}")
        raise UserError(f"{where}: id {example_id!r} is not in the data file")
    return example_id


def parse_candidates(rows: Iterable[dict[str, Any]], source: str, known_ids: set[str]) -> dict[str, list[str]]:
    """Validate ``{"id", "candidates": [str, ...]}`` rows; several rows for one id are merged in order."""
    merged: dict[str, list[str]] = {}
    for number, row in enumerate(rows, 1):
        where = f"{source}: row {number}"
        example_id = _known_id(row, where, known_ids)
        texts = row.get("candidates")
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise UserError(f"{where} (id {example_id!r}): field 'candidates' must be a list of strings")
        merged.setdefault(example_id, []).extend(texts)
    return merged


def load_candidates(paths: Iterable[Path | str], known_ids: set[str]) -> dict[str, list[str]]:
    """Read and validate candidate JSONL files; an id's candidates from several files are merged in
    file order (several checkpoints' samples for DPO pairs or reranking)."""
    merged: dict[str, list[str]] = {}
    for path in paths:
        for example_id, texts in parse_candidates(read_jsonl(path), str(path), known_ids).items():
            merged.setdefault(example_id, []).extend(texts)
    return merged


def parse_human_pairs(rows: Iterable[dict[str, Any]], source: str, known_ids: set[str]) -> dict[str, list[tuple[str, str]]]:
    """Validate ``{"id", "chosen", "rejected"}`` rows given by people."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for number, row in enumerate(rows, 1):
        where = f"{source}: row {number}"
        example_id = _known_id(row, where, known_ids)
        texts = []
        for key in ("chosen", "rejected"):
            value = row.get(key)
            if isinstance(value, dict):  # accept {"role": "assistant", "content": ...} too
                value = value.get("content")
            if not isinstance(value, str) or not value.strip():
                raise UserError(f"{where} (id {example_id!r}): field '{key}' must be a non-empty string")
            texts.append(value.strip())
        if texts[0] == texts[1]:
            raise UserError(f"{where} (id {example_id!r}): 'chosen' and 'rejected' are identical")
        pairs.setdefault(example_id, []).append((texts[0], texts[1]))
    return pairs
