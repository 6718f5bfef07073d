"""The one prompt builder: SFT data, DPO data and inference all render prompts through here.

The strings reproduce the 2024 reference system byte for byte::

    [Conversation]
    화자SD2000001: 안녕하세요.
    화자SD2000002: 네~ 반가워요.

    [Question]
    위 여행, 음식 주제에 대한 대화를 요약해주세요.

Truncation (optional, needs a tokenizer) makes the prompt, as the chat template renders it, fit a token
budget by dropping whole utterances from the *middle* of the conversation — never the ``[Question]``
line, which the reference system lost on long dialogues. The middle goes first because the opening
(who is talking, about what) and the closing (what they settled on) are what summaries lean on most,
while the middle of a long daily conversation is where it wanders and repeats. Dropped utterances that
turn out not to be needed are put back, so the prompt uses its budget; only if not even one utterance
fits is the conversation cut inside an utterance, at a token boundary. A prompt always keeps some dialogue
text — at least the first word of the first utterance that has any: below that budget
:class:`BudgetTooSmall` says how many tokens the example needs (``build-sft-data`` keeps such a row out and
names it; ``infer`` names the dialogues and the budget they need), so no row teaches the model to summarise
a bare speaker label. A first word that is itself longer than the budget (a 60,000-character run of text with
no space: no budget the model's context allows could hold it) is cut instead, as much of it kept as fits,
and counted (``Prompt.cut_word``) for the commands to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from common.errors import UserError
from common.tokenizer import chat_prompt_ids
from dataset_builders.cleaning import CleaningReport, clean_conversation
from dataset_builders.nikl import Example, Utterance

if TYPE_CHECKING:  # pragma: no cover - typing only
    from transformers import PreTrainedTokenizerBase

SYSTEM_PROMPTS = {
    # Default: the system prompt EXAONE was instruction-tuned with.
    "exaone": "You are EXAONE model from LG AI Research, a helpful assistant. Please answer the user's questions kindly.",
    # The one the 2024 reference trainer used.
    "reference": "You are a helpful AI assistant. Please answer the user's questions kindly.",
}
DEFAULT_SYSTEM_PROMPT = "exaone"

def resolve_system_prompt(name_or_text: str | None) -> str:
    """A known name (``exaone``, ``reference``) maps to its text; anything else is used verbatim."""
    if name_or_text is None:
        return SYSTEM_PROMPTS[DEFAULT_SYSTEM_PROMPT]
    return SYSTEM_PROMPTS.get(name_or_text, name_or_text)


CONVERSATION_HEADER = "[Conversation]\n"
SPEAKER_LABEL = "화자"  # before each speaker id: "화자SD2100503: …"


def conversation_line(turn: Utterance) -> str:
    return f"{SPEAKER_LABEL}{turn.speaker}: {turn.utterance}"


def conversation_lines(conversation: Sequence[Utterance]) -> list[str]:
    return [conversation_line(turn) for turn in conversation]


def question_text(subject_keyword: Sequence[str]) -> str:
    return f"\n\n[Question]\n위 {', '.join(subject_keyword)} 주제에 대한 대화를 요약해주세요."


def user_message(conversation: Sequence[Utterance | str], subject_keyword: Sequence[str]) -> str:
    """The user turn: ``[Conversation]``, one line per utterance, then the ``[Question]`` line. The one place the
    prompt's text is put together — SFT rows, DPO rows, truncation and inference all come here. ``conversation``:
    the utterances, or lines already rendered (truncation passes the lines it keeps, or the conversation cut at a
    token boundary)."""
    lines = [turn if isinstance(turn, str) else conversation_line(turn) for turn in conversation]
    return CONVERSATION_HEADER + "\n".join(lines) + question_text(subject_keyword)


def parse_user_message(text: str) -> tuple[list[Utterance], list[str]] | None:
    """The dialogue and keywords that :func:`user_message` builds ``text`` from — its inverse — or ``None`` when
    ``text`` is not a user turn it builds. A line that does not start a turn (``화자ID: …``) continues the one
    before (an utterance with a line break), so ``user_message`` of the result is ``text`` again."""
    question_head, question_tail = question_text(["\0"]).split("\0")
    if not text.startswith(CONVERSATION_HEADER) or not text.endswith(question_tail):
        return None
    body, found, keywords = text[len(CONVERSATION_HEADER):-len(question_tail)].rpartition(question_head)
    if not found or not keywords:
        return None
    turns: list[Utterance] = []
    for line in body.split("\n"):
        speaker, colon, utterance = line[len(SPEAKER_LABEL):].partition(": ")
        if line.startswith(SPEAKER_LABEL) and colon and speaker:
            turns.append(Utterance(speaker, utterance))
        elif turns:
            turns[-1] = Utterance(turns[-1].speaker, turns[-1].utterance + "\n" + line)
        else:
            return None
    return turns, keywords.split(", ")


class BudgetTooSmall(UserError):
    """The token budget leaves no room for any dialogue text; ``needed`` is the smallest budget that holds
    some (``None`` when the conversation has no text at all)."""

    def __init__(self, budget: int, needed: int | None) -> None:
        super().__init__(f"a prompt budget of {budget} tokens leaves no room for any dialogue text"
                         + (f" (this dialogue needs at least {needed})" if needed is not None else
                            " (the conversation has no text)"))
        self.budget = budget
        self.needed = needed


@dataclass(frozen=True)
class Prompt:
    """Prompt turns for one example, plus what was done to them. With a tokenizer, ``token_ids`` is the
    prompt as the chat template renders it (assistant header included), so nobody renders it twice."""

    messages: list[dict[str, str]]
    truncated: bool = False
    token_ids: list[int] | None = None
    dropped_utterances: int = 0
    cut_word: bool = False  # the dialogue's first word, longer than the whole budget, was cut

    @property
    def prompt_tokens(self) -> int | None:
        return None if self.token_ids is None else len(self.token_ids)


def middle_out(count: int) -> list[int]:
    """Utterance indices in the order truncation drops them: the middle first, the first and last last."""
    return sorted(range(count), key=lambda index: (abs(index - (count - 1) / 2), index))


class PromptBuilder:
    """Renders examples into chat messages, with optional cleaning and token-budget truncation.

    ``tokenizer`` and ``max_prompt_tokens`` go together: the budget is measured on the prompt as the chat
    template renders it (system + user + assistant header) — the tokenizer's own template, or
    ``chat_template`` (a Jinja string, e.g. the one an Axolotl recipe names) when given.
    """

    def __init__(
        self,
        system_prompt: str | None = None,
        clean_rules: Sequence[str] = (),
        tokenizer: "PreTrainedTokenizerBase | None" = None,
        max_prompt_tokens: int | None = None,
        chat_template: str | None = None,
    ) -> None:
        if max_prompt_tokens is not None and tokenizer is None:
            raise UserError("--max-prompt-tokens needs --tokenizer to count tokens with")
        if max_prompt_tokens is not None and max_prompt_tokens <= 0:
            raise UserError(f"--max-prompt-tokens must be positive, got {max_prompt_tokens}")
        self.system_prompt = resolve_system_prompt(system_prompt)
        self.clean_rules = tuple(clean_rules)
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.chat_template = chat_template
        self.cleaning = CleaningReport(self.clean_rules)

    def messages(self, conversation: Sequence[Utterance | str], subject_keyword: Sequence[str]) -> list[dict[str, str]]:
        """The system and user turns (:func:`user_message`)."""
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": user_message(conversation, subject_keyword)}]

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of ``messages`` as the chat template renders them (with the assistant header unless
        the last message is the answer)."""
        if self.tokenizer is None:
            raise UserError("counting prompt tokens needs a tokenizer (--tokenizer)")
        return chat_prompt_ids(self.tokenizer, messages, chat_template=self.chat_template,
                               add_generation_prompt=add_generation_prompt)

    def completion_tokens(self, prompt: "Prompt", completion: str) -> int:
        """Tokens the answer adds to ``prompt`` in a training row: the text and the template's closing
        tokens (``[|endofturn|]`` …) — what Axolotl counts beyond the prompt."""
        row = self.render([*prompt.messages, {"role": "assistant", "content": completion}],
                          add_generation_prompt=False)
        return len(row) - len(prompt.token_ids if prompt.token_ids is not None else self.render(prompt.messages))

    def build(self, example: Example, budget: int | None = None) -> Prompt:
        """The prompt of ``example``; with a tokenizer and a budget (``budget``, else ``max_prompt_tokens``)
        it fits in that many tokens."""
        budget = self.max_prompt_tokens if budget is None else budget
        conversation = example.conversation
        if self.clean_rules:
            conversation = clean_conversation(conversation, self.clean_rules, self.cleaning)
        lines = conversation_lines(conversation)
        keywords = example.subject_keyword
        messages = self.messages(lines, keywords)
        if self.tokenizer is None:
            return Prompt(messages)
        ids = self.render(messages)
        if budget is None or len(ids) <= budget:
            return Prompt(messages, token_ids=ids)
        return self._truncate(lines, [first_word_end(turn) for turn in conversation], keywords, len(ids), budget)

    def fit(self, example: Example, completions: Sequence[str],
            max_seq_len: int | None) -> "tuple[Prompt, int | None] | None":
        """The prompt of ``example`` such that prompt + the longest of ``completions`` (with the template's
        closing tokens) fits in ``max_seq_len`` tokens, and that row's length; ``None`` when no prompt can
        (the answer leaves no room for the first words of the dialogue, or ``max_prompt_tokens`` does not).
        Without ``max_seq_len``: :meth:`build`'s prompt and ``None``."""
        try:
            prompt = self.build(example)
        except BudgetTooSmall:
            return None
        if max_seq_len is None:
            return prompt, None
        completion = max(self.completion_tokens(prompt, text) for text in completions)
        for _ in range(3):  # one re-build fits; the closing tokens do not depend on the prompt, re-measured anyway
            if prompt.prompt_tokens + completion <= max_seq_len:
                return prompt, prompt.prompt_tokens + completion
            budget = max_seq_len - completion
            if self.max_prompt_tokens is not None:
                budget = min(budget, self.max_prompt_tokens)
            try:
                prompt = self.build(example, budget=budget)
            except BudgetTooSmall:
                return None
            completion = max(self.completion_tokens(prompt, text) for text in completions)
        return None

    def _truncate(self, lines: list[str], words: list[int | None], keywords: Sequence[str], length: int,
                  budget: int) -> Prompt:
        """Drop whole utterances, middle first, until the rendered prompt fits ``budget``; then put back
        (outermost first) those that still fit. Token costs per line are estimates; every candidate is
        re-rendered, so the result is exact. ``words``: per line, where its first word of utterance text ends
        (:func:`first_word_end`); when no line with text fits whole, the conversation is cut inside one."""
        assert self.tokenizer is not None
        costs = [len(ids) for ids in self.tokenizer([line + "\n" for line in lines], add_special_tokens=False,
                                                   verbose=False)["input_ids"]]
        order = middle_out(len(lines))
        removed: list[int] = []
        excess = length - budget
        for index in order:
            if excess <= 0:
                break
            removed.append(index)
            excess -= costs[index]

        def attempt(dropped: set[int]) -> tuple[list[dict[str, str]], list[int]]:
            messages = self.messages([line for i, line in enumerate(lines) if i not in dropped], keywords)
            return messages, self.render(messages)

        messages, ids = attempt(set(removed))
        while len(ids) > budget and len(removed) < len(lines):  # the estimate was short: drop one more
            removed.append(order[len(removed)])
            messages, ids = attempt(set(removed))
        if len(removed) == len(lines):  # not one whole utterance fits: keep the start, cut at a token boundary
            return self._cut_inside(lines, words, keywords, budget)
        dropped = set(removed)
        for index in reversed(removed):  # put back what still fits, outermost first
            if len(ids) + costs[index] <= budget:
                trial_messages, trial_ids = attempt(dropped - {index})
                if len(trial_ids) <= budget:
                    dropped.discard(index)
                    messages, ids = trial_messages, trial_ids
        if all(words[index] is None for index in range(len(lines)) if index not in dropped):  # only empty turns
            return self._cut_inside(lines, words, keywords, budget)
        return Prompt(messages, truncated=True, token_ids=ids, dropped_utterances=len(dropped))

    def _cut_inside(self, lines: list[str], words: list[int | None], keywords: Sequence[str], budget: int) -> Prompt:
        """The conversation block cut at a token boundary (character offsets of its own tokens, so no decode
        artefacts), keeping at least the first word of the first utterance with text; re-measured because
        merges across the cut can shift the length by a token or two. :class:`BudgetTooSmall` when not
        even that fits."""
        assert self.tokenizer is not None
        first = next((index for index, end in enumerate(words) if end is not None), None)
        if first is None:
            raise BudgetTooSmall(budget, None)
        block = "\n".join(lines)
        word_end = sum(len(line) + 1 for line in lines[:first]) + words[first]
        word = block[:word_end].rsplit(maxsplit=1)[-1]
        shortest = word_end
        if len(self.tokenizer(word, add_special_tokens=False, verbose=False)["input_ids"]) > budget:
            shortest = word_end - len(word) + 1  # no budget holds this word: keep what fits of it, at least a token
        ends = [end for _, end in self.tokenizer(block, add_special_tokens=False, return_offsets_mapping=True,
                                                verbose=False)["offset_mapping"] if end >= shortest] or [len(block)]
        keep = len(ends)
        while True:
            cut = ends[keep - 1]
            messages = self.messages([block[:cut].rstrip()], keywords)
            ids = self.render(messages)
            if len(ids) <= budget:
                kept_lines = block[:cut].count("\n") + 1
                return Prompt(messages, truncated=True, token_ids=ids, dropped_utterances=len(lines) - kept_lines,
                              cut_word=cut < word_end)
            if keep == 1:
                raise BudgetTooSmall(budget, len(ids))
            keep = max(1, keep - max(1, len(ids) - budget))


def words_cut(count: int) -> str:
    """How the commands report prompts whose first word was cut (``Prompt.cut_word``)."""
    return f"{count} word{'s' if count != 1 else ''} longer than the budget cut"


def first_word_end(turn: Utterance) -> int | None:
    """Where the first word of ``turn``'s utterance ends in its prompt line (``None`` for an empty one):
    the least of a conversation a truncated prompt keeps."""
    text = turn.utterance.lstrip()
    if not text:
        return None
    label = len(conversation_lines([Utterance(turn.speaker, "")])[0])
    return label + len(turn.utterance) - len(text) + len(text.split(maxsplit=1)[0])
