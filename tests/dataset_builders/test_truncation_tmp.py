"""Truncation drops conversation tokens only; the [Question] line always survives."""

import pytest
from transformers import AutoTokenizer

from common.errors import UserError
from dataset_builders.nikl import Example, Utterance
from dataset_builders.prompt import PromptBuilder, conversation_lines, question_text

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
    assert user.startswith("[Conversation]\n화자SD2000001: 어~ 이건 0번째")
    assert user.endswith(question_text(LONG.subject_keyword))
    # Whole utterances are dropped from the middle: the first and the last survive, and each kept line is
    # an original line, in order.
    lines = conversation_lines(LONG.conversation)
    kept = user[len("[Conversation]\n"):-len(question_text(LONG.subject_keyword))].split("\n")
    indices = [lines.index(line) for line in kept]
    assert indices == sorted(indices) and indices[0] == 0 and indices[-1] == len(lines) - 1
    dropped = [i for i in range(len(lines)) if i not in indices]
    assert prompt.dropped_utterances == len(dropped) > 0
    # It drops no more than it must: putting back any one dropped utterance would break the budget.
    for index in dropped:
        back = sorted(indices + [index])
        messages = [prompt.messages[0], {"role": "user", "content": "[Conversation]\n" + "\n".join(
            lines[i] for i in back) + question_text(LONG.subject_keyword)}]
        assert rendered_length(tokenizer, messages) > budget


def test_a_budget_below_one_utterance_cuts_inside_the_first(tokenizer):
    giant = Example("giant", (Utterance("SD2000001", "아주 긴 이야기를 계속 합니다 " * 60),
                              Utterance("SD2000002", "네~ " * 80)), ("이야기",), "요약")
    prompt = PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=120).build(giant)
    user = prompt.messages[1]["content"]
    assert prompt.truncated and prompt.prompt_tokens <= 120
    assert user.startswith("[Conversation]\n화자SD2000001: 아주 긴 이야기를") and "SD2000002" not in user
    assert user.endswith(question_text(giant.subject_keyword))


def test_short_prompt_untouched(tokenizer):
    short = Example("s", LONG.conversation[:2], ("식사",), "요약")
    prompt = PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=4000).build(short)
    assert not prompt.truncated
    assert prompt.messages == PromptBuilder().build(short).messages


def test_budget_smaller_than_question_is_an_error(tokenizer):
    with pytest.raises(UserError, match="no room for any dialogue text"):
        PromptBuilder(tokenizer=tokenizer, max_prompt_tokens=5).build(LONG)


def test_budget_needs_tokenizer():
    with pytest.raises(UserError, match="needs --tokenizer"):
        PromptBuilder(max_prompt_tokens=100)
