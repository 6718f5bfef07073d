"""Dialogues as generation jobs (prompt token ids) and the interface every engine offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder
from dataset_builders.tokenizer import chat_prompt_ids


@dataclass(frozen=True)
class Job:
    """One dialogue to summarise: its id and rendered prompt token ids."""

    id: str
    prompt_ids: list[int]
    truncated: bool = False
    dropped_utterances: int = 0


class Engine(Protocol):
    tokenizer: Any
    decoding: Any
    context_length: int | None
    device: str  # where it generates ("cpu", "cuda:0", …): the default batch budget depends on it

    def settings(self) -> dict[str, Any]: ...

    def generate(self, jobs: Sequence[Job]) -> list[list[str]]: ...


def prepare_jobs(examples: Sequence[Example], builder: PromptBuilder, tokenizer: Any) -> list[Job]:
    """Render each example's prompt with the one prompt builder (truncating as `build-sft-data` does).
    The builder's own rendering is reused when it has the same tokenizer, so each prompt is rendered once."""
    jobs = []
    for example in examples:
        prompt = builder.build(example)
        ids = prompt.token_ids if builder.tokenizer is tokenizer and prompt.token_ids is not None else None
        jobs.append(Job(example.id, ids if ids is not None else chat_prompt_ids(tokenizer, prompt.messages),
                        prompt.truncated, prompt.dropped_utterances))
    return jobs
