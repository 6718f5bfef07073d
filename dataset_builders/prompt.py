"""The one prompt builder: SFT data, DPO data and inference all render prompts through here.

The strings reproduce the 2024 reference system byte for byte::

    [Conversation]
    화자SD2000001: 안녕하세요.
    화자SD2000002: 네~ 반가워요.

    [Question]
    위 여행, 음식 주제에 대한 대화를 요약해주세요.

Truncation (optional, needs a tokenizer) drops tokens from the end of the conversation block only,
so the ``[Question]`` line always survives — the reference system truncated the whole prompt and
lost the question on long dialogues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from common.errors import UserError
from dataset_builders.cleaning import CleaningReport, clean_conversation
from dataset_builders.nikl import Example, Utterance
from dataset_builders.tokenizer import chat_prompt_ids

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import PreTrainedTokenizerBase

SYSTEM_PROMPTS = {
    # Default: the system prompt EXAONE was instruction-tuned with.
    "exaone": "You are EXAONE model from LG AI Research, a helpful assistant. Please answer the user's questions kindly.",
    # The one the 2024 reference trainer used.
    "reference": "You are a helpful AI assistant. Please answer the user's questions kindly.",
}
DEFAULT_SYSTEM_PROMPT = "exaone"

CONVERSATION_HEADER = "[Conversation]\n"


def resolve_system_prompt(name_or_text: str | None) -> str:
    """A known name (``exaone``, ``reference``) maps to its text; anything else is used verbatim."""
    if name_or_text is None:
        return SYSTEM_PROMPTS[DEFAULT_SYSTEM_PROMPT]
    return SYSTEM_PROMPTS.get(name_or_text, name_or_text)


def conversation_text(conversation: Sequence[Utterance]) -> str:
    return "\n".join(f"화자{turn.speaker}: {turn.utterance}" for turn in conversation)


def question_text(subject_keyword: Sequence[str]) -> str:
    return f"\n\n[Question]\n위 {', '.join(subject_keyword)} 주제에 대한 대화를 요약해주세요."


def user_message(conversation: Sequence[Utterance], subject_keyword: Sequence[str]) -> str:
    return CONVERSATION_HEADER + conversation_text(conversation) + question_text(subject_keyword)


@dataclass(frozen=True)
class Prompt:
    """Prompt turns for one example, plus what was done to them. With a tokenizer, ``token_ids`` is the
    prompt as the chat template renders it (assistant header included), so nobody renders it twice."""

    messages: list[dict[str, str]]
    truncated: bool = False
    token_ids: list[int] | None = None

    @property
    def prompt_tokens(self) -> int | None:
        return None if self.token_ids is None else len(self.token_ids)


class PromptBuilder:
    """Renders examples into chat messages, with optional cleaning and token-budget truncation.

    ``tokenizer`` and ``max_prompt_tokens`` go together: the budget is measured on the prompt as the
    tokenizer's chat template renders it (system + user + assistant header).
    """

    def __init__(
        self,
        system_prompt: str | None = None,
        clean_rules: Sequence[str] = (),
        tokenizer: "PreTrainedTokenizerBase | None" = None,
        max_prompt_tokens: int | None = None,
    ) -> None:
        if max_prompt_tokens is not None and tokenizer is None:
            raise UserError("--max-prompt-tokens needs --tokenizer to count tokens with")
        if max_prompt_tokens is not None and max_prompt_tokens <= 0:
            raise UserError(f"--max-prompt-tokens must be positive, got {max_prompt_tokens}")
        self.system_prompt = resolve_system_prompt(system_prompt)
        self.clean_rules = tuple(clean_rules)
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.cleaning = CleaningReport(self.clean_rules)

    def messages(self, user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]

    def render(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the prompt as the tokenizer's chat template renders it (with the assistant header)."""
        assert self.tokenizer is not None
        return chat_prompt_ids(self.tokenizer, messages)

    def build(self, example: Example) -> Prompt:
        conversation = example.conversation
        if self.clean_rules:
            conversation = clean_conversation(conversation, self.clean_rules, self.cleaning)
        conversation_block = conversation_text(conversation)
        question = question_text(example.subject_keyword)
        messages = self.messages(CONVERSATION_HEADER + conversation_block + question)
        if self.tokenizer is None:
            return Prompt(messages)
        ids = self.render(messages)
        if self.max_prompt_tokens is None or len(ids) <= self.max_prompt_tokens:
            return Prompt(messages, token_ids=ids)
        return self._truncate(conversation_block, question, len(ids))

    def _truncate(self, conversation_block: str, question: str, length: int) -> Prompt:
        """Cut the conversation block at a token boundary until the rendered prompt fits.

        Cutting by character offsets of the conversation's own tokens avoids decode artefacts; the
        rendered length is re-measured because merges across the cut can shift it by a token or two.
        """
        assert self.tokenizer is not None and self.max_prompt_tokens is not None
        encoding = self.tokenizer(
            conversation_block, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        ends = [end for _, end in encoding["offset_mapping"]]
        keep = max(0, len(ends) - (length - self.max_prompt_tokens))
        while True:
            cut = ends[keep - 1] if keep > 0 else 0
            messages = self.messages(CONVERSATION_HEADER + conversation_block[:cut].rstrip() + question)
            ids = self.render(messages)
            length = len(ids)
            if length <= self.max_prompt_tokens:
                return Prompt(messages, truncated=True, token_ids=ids)
            if keep == 0:
                raise UserError(
                    f"max_prompt_tokens={self.max_prompt_tokens} is too small: the prompt without any "
                    f"conversation already takes {length} tokens"
                )
            keep = max(0, keep - max(1, length - self.max_prompt_tokens))
