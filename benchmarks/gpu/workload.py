"""Inputs, deterministic from the seed: test-split-like prompt lengths and jobs, dev-split-like packed rows.

The split statistics (length percentiles, the test split's size) come from ``dataset_builders/synthetic.py``."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import Sequence

from benchmarks.gpu.shapes import Profile
from dataset_builders.synthetic import DIALOGUE_CHARS, QUANTILES, SUMMARY_CHARS, quantile_draw

FIRST_TOKEN_ID = 10  # random prompt tokens avoid the lowest ids (pad 0, bos 1, …)
PROMPT_LENGTH_SOURCE = (
    "test split characters per dialogue, percentiles " + "/".join(f"{q * 100:g}" for q in QUANTILES) + " = "
    + "/".join(str(chars) for chars in DIALOGUE_CHARS["test"]))


def quantile(points: Sequence[float], u: float) -> float:
    """The piecewise-linear inverse CDF through the synthetic set's percentiles (``QUANTILES``, ``points``) at a
    given ``u``. ``quantile_draw`` is the same function but draws ``u`` itself; the stratified prompt lengths
    choose their ``u`` (one per stratum), so they need it at a given point."""
    i = min(max(bisect.bisect_right(QUANTILES, u) - 1, 0), len(QUANTILES) - 2)
    (p0, v0), (p1, v1) = (QUANTILES[i], points[i]), (QUANTILES[i + 1], points[i + 1])
    return v0 + (v1 - v0) * (u - p0) / (p1 - p0)


def stratified_draws(count: int, rng: random.Random) -> list[float]:
    """``count`` uniforms, one per equal-width stratum, shuffled: a small sample still spans the range."""
    draws = [(i + rng.random()) / count for i in range(count)]
    rng.shuffle(draws)
    return draws


def prompt_lengths(profile: Profile, count: int, seed: int) -> list[int]:
    # Stratified on purpose (unlike the synthetic set's independent draws): the batch-1 subset of 8 prompts and
    # a short --prompts run still span the test split's whole length range, its longest prompts included.
    rng = random.Random(seed)
    limit = profile.gen_shape.positions - profile.new_tokens
    return [min(limit, profile.prompt_overhead
                + round(profile.tokens_per_char * quantile(DIALOGUE_CHARS["test"], u)))
            for u in stratified_draws(count, rng)]


def make_jobs(profile: Profile, count: int, seed: int):
    """``count`` generation jobs: test-split-like lengths, random token ids."""
    from generation.jobs import Job

    rng = random.Random(seed + 1)
    vocab = profile.gen_shape.vocab
    return [Job(f"bench-{i:04d}", [rng.randrange(FIRST_TOKEN_ID, vocab) for _ in range(length)])
            for i, length in enumerate(prompt_lengths(profile, count, seed))]


@dataclass
class PackedRow:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    segments: list[int]  # dialogue lengths in this row (sum = seq_len)


def packed_rows(profile: Profile, vocab: int, count: int, seed: int) -> list[PackedRow]:
    """Rows of exactly ``seq_len`` tokens, filled with dev-split-like dialogues (prompt + summary +
    ``[|endofturn|]``) one after another, position ids restarting at 0 per dialogue, loss on the summary
    tokens only. The last dialogue of a row is cut to fill it (Axolotl pads instead: the same compute)."""
    rng = random.Random(seed + 2)
    dev_chars = DIALOGUE_CHARS["dev"]
    rows = []
    for _ in range(count):
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        segments: list[int] = []
        while len(ids) < profile.seq_len:
            prompt = profile.prompt_overhead + round(profile.tokens_per_char * quantile_draw(rng, dev_chars))
            summary = round(profile.tokens_per_char * quantile_draw(rng, SUMMARY_CHARS)) + 1
            length = min(prompt + summary, profile.seq_len - len(ids))
            tokens = [rng.randrange(FIRST_TOKEN_ID, vocab) for _ in range(length)]
            ids += tokens
            labels += [-100 if i < prompt else token for i, token in enumerate(tokens)]
            positions += list(range(length))
            segments.append(length)
        rows.append(PackedRow(ids, labels, positions, segments))
    return rows


def percentiles(values: Sequence[float], points: Sequence[int] = (0, 10, 50, 90, 99, 100)) -> dict[str, float]:
    ordered = sorted(values)
    return {f"p{p}": ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] for p in points}
