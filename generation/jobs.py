"""Dialogues as generation jobs (prompt token ids) and the interface every engine offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from common.errors import UserError
from common.tokenizer import chat_prompt_ids
from dataset_builders.nikl import Example
from dataset_builders.prompt import BudgetTooSmall, PromptBuilder


@dataclass(frozen=True)
class Job:
    """One dialogue to summarise: its id and rendered prompt token ids."""

    id: str
    prompt_ids: list[int]
    truncated: bool = False
    dropped_utterances: int = 0
    cut_word: bool = False  # its first word, longer than the whole prompt budget, was cut (dataset_builders.prompt)


class Engine(Protocol):
    tokenizer: Any
    decoding: Any
    context_length: int | None
    device: str  # where it generates ("cpu", "cuda:0", …): the default batch budget depends on it

    def settings(self) -> dict[str, Any]: ...

    def generate(self, jobs: Sequence[Job]) -> list[list[str]]: ...


def prepare_jobs(examples: Sequence[Example], builder: PromptBuilder, tokenizer: Any) -> list[Job]:
    """Render each example's prompt with the one prompt builder (truncating as `build-sft-data` does).
    The builder's own rendering is reused when it has the same tokenizer, so each prompt is rendered once.
    A budget that leaves some dialogues no room for any dialogue text is one :class:`UserError` naming them
    and the budget they need, before anything is generated."""
    jobs = []
    too_small: dict[str, int | None] = {}
    for example in examples:
        try:
            prompt = builder.build(example)
        except BudgetTooSmall as error:
            too_small[example.id] = error.needed
            continue
        ids = prompt.token_ids if builder.tokenizer is tokenizer and prompt.token_ids is not None else None
        jobs.append(Job(example.id, ids if ids is not None else chat_prompt_ids(tokenizer, prompt.messages),
                        prompt.truncated, prompt.dropped_utterances, prompt.cut_word))
    if too_small:
        ids = list(too_small)
        shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        needed = max((n for n in too_small.values() if n is not None), default=None)
        raise UserError(f"a prompt budget of {builder.max_prompt_tokens} tokens leaves no room for any dialogue text "
                        f"in {len(ids)} dialogue(s) ({shown})"
                        + (f": they need at least {needed}; raise --max-prompt-tokens or lower --max-new-tokens"
                           if needed is not None else ": their conversations have no text"))
    return jobs
