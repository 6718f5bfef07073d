"""Truncation drops conversation tokens only; the [Question] line always survives."""

import pytest
from transformers import AutoTokenizer

from common.errors import UserError
from dataset_builders.nikl import Example, Utterance
from dataset_builders.prompt import PromptBuilder, question_text

LONG = Example(
    id="long",
    conversation=tuple(
        Utterance(f"SD20000{index % 2 + 1:02d}", f"어~ 이건 {index}번째 긴 발화인데요 name1 씨랑 같이 &address& 근처에서 밥을 먹었어요.")
        for index in range(120)
    ),
    subject_keyword=("식사", "친구", "동네"),
    output="요약",
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def rendered_length(tokenizer, messages):
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"])


@pytest.mark.parametrize("budget", [150, 300, 777])
def test_truncated_prompt_fits_and_keeps_question(tokenizer, budget):
    full = PromptBuilder(tokenizer=tokenizer).build(LONG)
    assert full.prompt_tokens > budget
    prompt = PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=budget).build(LONG)
    user = prompt.messages[1]["content"]
    assert prompt.truncated
    assert rendered_length(tokenizer, prompt.messages) == prompt.prompt_tokens <= budget
    assert prompt.prompt_tokens >= budget - 5  # drops no more than it must
    assert user.startswith("[Conversation]\n화자SD2000001: 어~ 이건 0번째")
    assert user.endswith(question_text(LONG.subject_keyword))
    assert full.messages[1]["content"].startswith(user[: -len(question_text(LONG.subject_keyword))])


def test_short_prompt_untouched(tokenizer):
    short = Example("s", LONG.conversation[:2], ("식사",), "요약")
    prompt = PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=4000).build(short)
    assert not prompt.truncated
    assert prompt.messages == PromptBuilder().build(short).messages


def test_budget_smaller_than_question_is_an_error(tokenizer):
    with pytest.raises(UserError, match="too small"):
        PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=5).build(LONG)


def test_budget_needs_tokenizer():
    with pytest.raises(UserError, match="needs --tokenizer"):
        PromptBuilder(max_prompt_tokens=100)
