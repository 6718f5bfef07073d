"""The demo's learning lines: numbers a correct pipeline reaches on the learnable task on every run, each a line
that passes or fails and, failing, names the symptom.

They read a :class:`LearningResults` — the dev scores and facts the demo collected from its stages' files — so
they are plain functions a test can feed constructed results (:func:`learning_checks`). What each line guards:

- the base model scores ≤ :data:`BASE_MAX`: the task cannot be done without training (a leak would show);
- after SFT and checkpoint selection ≥ :data:`SFT_MIN`, far above what the summary's wording alone scores
  (another dialogue's summary for each dev dialogue, :attr:`LearningResults.wording_only`): the model reads
  the dialogue. A loss on the prompt instead of the summary, or an inference prompt unlike the training one,
  keeps it low;
- ≥ :data:`STOP_MIN` of the SFT and DPO dev summaries end at the end-of-turn token, not at --max-new-tokens:
  an end-of-turn token that was never trained fails here;
- the selected checkpoint scores at least the last one's: a choice by the wrong sign fails;
- DPO's preference accuracy on held-out dev pairs rises above chance: chosen and rejected swapped fail;
- DPO's dev ROUGE-1 ends no more than :data:`DPO_DROP_MAX` points below its start checkpoint's: DPO that
  collapses (more likely-looking pairs, worse summaries that stop stopping) fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

BASE_MAX = 10.0  # ROUGE-1 (0–100) an untrained model stays under
SFT_MIN = 80.0  # ROUGE-1 after SFT: reading the dialogue, not just the wording
STOP_MIN = 0.9  # share of dev summaries that end at the end-of-turn token
DPO_DROP_MAX = 2.0  # ROUGE-1 points DPO may lose against its start


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


@dataclass
class LearningResults:
    """What the learning lines read, collected from the demo's files (dev ROUGE-1 on 0–100)."""

    rouge1: dict[str, float]  # base, sft, dpo_start, dpo (and rerank)
    wording_only: float  # each dev dialogue scored with another dialogue's reference: the wording alone
    stopped: dict[str, tuple[int, int]]  # sft, dpo: (summaries ending at the end-of-turn token, dev summaries)
    selected: tuple[str, float]  # the selected checkpoint and its score
    last: tuple[str, float]  # the last checkpoint (the run's final output) and its score
    dpo_accuracy: list[tuple[int, float]] = field(default_factory=list)  # (step, held-out reward accuracy)
    dpo_vs_start: dict[str, Any] | None = None  # `tools compare`'s DPO − start: difference, low, high, verdict

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stop_check(name: str, stopped: tuple[int, int], cause: str) -> Check:
    count, total = stopped
    share = count / total if total else 0.0
    detail = f"{count}/{total} ({share:.0%}) end at the end-of-turn token (≥ {STOP_MIN:.0%})"
    if share < STOP_MIN:
        detail += f" — the others run to --max-new-tokens: {cause}"
    return Check(f"{name} summaries stop", share >= STOP_MIN, detail)


def learning_checks(results: LearningResults) -> list[Check]:
    """The learning lines, in the order the pipeline reaches them."""
    score = results.rouge1
    checks = []
    base = score["base"]
    checks.append(Check("base model scores low", base <= BASE_MAX,
                        f"dev ROUGE-1 {base:.2f} ≤ {BASE_MAX:g}" + (
                            "" if base <= BASE_MAX else " — an untrained model should not do the task: a leak?")))
    sft = score["sft"]
    detail = (f"dev ROUGE-1 {sft:.2f} ≥ {SFT_MIN:g} (base {base:.2f}; the summary's wording alone, with another "
              f"dialogue's names: {results.wording_only:.2f})")
    if sft < SFT_MIN:
        detail += (" — the model did not learn to read the dialogue: loss on the prompt instead of the summary, or "
                   "an inference prompt unlike the training one? (tools check-data)")
    checks.append(Check("SFT learns the task", sft >= SFT_MIN, detail))
    checks.append(stop_check("SFT", results.stopped["sft"], "is the end-of-turn token trained (train_on_eos)?"))
    (chosen, chosen_score), (last, last_score) = results.selected, results.last
    good = chosen_score >= last_score
    checks.append(Check("selection keeps the best", good,
                        f"{chosen} ROUGE-1 {chosen_score:.2f} ≥ {last} {last_score:.2f}" + (
                            "" if good else " — the selection picked a worse checkpoint: a score read with the "
                                            "wrong sign?")))
    checks.append(dpo_accuracy_check(results.dpo_accuracy))
    start, dpo = score["dpo_start"], score["dpo"]
    held = dpo >= start - DPO_DROP_MAX
    detail = f"dev ROUGE-1 {start:.2f} → {dpo:.2f} ({dpo - start:+.2f}; at most {DPO_DROP_MAX:g} below)"
    if results.dpo_vs_start:
        pair = results.dpo_vs_start
        detail += (f"; `tools compare`: {pair['difference']:+.2f} [{pair['low']:+.2f}, {pair['high']:+.2f}] "
                   f"{pair['verdict']}")
    if not held:
        detail += " — DPO made the summaries worse: swapped pairs, or a collapse (see docs/demo.md)"
    checks.append(Check("DPO keeps the summaries", held, detail))
    checks.append(stop_check("DPO", results.stopped["dpo"],
                             "DPO unlearnt the end of turn (a collapse, or swapped pairs; see docs/demo.md)"))
    return checks


def dpo_accuracy_check(history: list[tuple[int, float]]) -> Check:
    """Held-out reward accuracy rises from its first evaluation to its last, and ends above chance (0.5)."""
    name = "DPO learns the preferences"
    if len(history) < 2:
        return Check(name, False, f"{len(history)} evaluation(s) of the held-out pairs logged: need the first and "
                                   "the last")
    (first_step, first), (last_step, last) = history[0], history[-1]
    rises = last > first and last > 0.5
    detail = f"reward accuracy on held-out dev pairs {first:.2f} (step {first_step}) → {last:.2f} (step {last_step})"
    if not rises:
        detail += " — DPO prefers the rejected summaries: are chosen and rejected swapped?"
    return Check(name, rises, detail)
