"""The prompt must match the 2024 reference system byte for byte."""

from dataset_builders.nikl import Example, Utterance
from dataset_builders.prompt import (
    SYSTEM_PROMPTS,
    PromptBuilder,
    conversation_lines,
    resolve_system_prompt,
    user_message,
)

EXAMPLE = Example(
    id="x",
    conversation=(Utterance("SD2000001", "어~ 안녕하세요."), Utterance("SD2000002", ""), Utterance("SD2000001", "name1 씨 &company-name& 다녀요?")),
    subject_keyword=("회사", "인사"),
    output="요약",
)

GOLDEN_USER = (
    "[Conversation]\n"
    "화자SD2000001: 어~ 안녕하세요.\n"
    "화자SD2000002: \n"
    "화자SD2000001: name1 씨 &company-name& 다녀요?\n"
    "\n"
    "[Question]\n"
    "위 회사, 인사 주제에 대한 대화를 요약해주세요."
)


def test_user_message_golden():
    assert user_message(EXAMPLE.conversation, EXAMPLE.subject_keyword) == GOLDEN_USER


def test_user_message_takes_utterances_or_the_lines_truncation_keeps():
    lines = conversation_lines(EXAMPLE.conversation)
    assert user_message(lines, EXAMPLE.subject_keyword) == GOLDEN_USER
    assert user_message([lines[0], EXAMPLE.conversation[2]], EXAMPLE.subject_keyword) == GOLDEN_USER.replace(
        "화자SD2000002: \n", "")
    assert PromptBuilder().build(EXAMPLE).messages[1]["content"] == GOLDEN_USER


def test_single_keyword_has_no_separator():
    assert user_message(EXAMPLE.conversation, ("여행",)).endswith("\n\n[Question]\n위 여행 주제에 대한 대화를 요약해주세요.")


def test_system_prompts_by_name_and_custom():
    assert SYSTEM_PROMPTS["exaone"] == (
        "You are EXAONE model from LG AI Research, a helpful assistant. Please answer the user's questions kindly."
    )
    assert SYSTEM_PROMPTS["reference"] == "You are a helpful AI assistant. Please answer the user's questions kindly."
    assert resolve_system_prompt(None) == SYSTEM_PROMPTS["exaone"]
    assert resolve_system_prompt("reference") == SYSTEM_PROMPTS["reference"]
    assert resolve_system_prompt("너는 요약 전문가야.") == "너는 요약 전문가야."


def test_builder_messages_default_system():
    prompt = PromptBuilder().build(EXAMPLE)
    assert prompt.messages == [
        {"role": "system", "content": SYSTEM_PROMPTS["exaone"]},
        {"role": "user", "content": GOLDEN_USER},
    ]
    assert not prompt.truncated


def test_rendered_with_exaone_template(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = PromptBuilder(tokenizer=tokenizer).build(EXAMPLE)
    text = tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    assert text == f"[|system|]{SYSTEM_PROMPTS['exaone']}[|endofturn|]\n[|user|]{GOLDEN_USER}\n[|assistant|]"
    assert prompt.prompt_tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"])
