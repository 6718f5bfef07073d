"""Values are checked where they are parsed — finite, in range, fitting the model — so a bad one is one line
before any work, never a traceback (or a segfault) later; and values that are unusual but valid give the right
result: ids in two Unicode forms are named as such, a word longer than the whole prompt budget is cut."""

from __future__ import annotations

import dataclasses
import json
import unicodedata

import click
import pytest

from helpers import DEV, TEST, TRAIN, load_json, one_line_error, tools_cli
from tools.cli import cli
from tools.options import FiniteFloat


def numeric_options():
    for name, command in sorted(cli.commands.items()):
        for param in command.params:
            if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                yield name, param


def test_every_numeric_option_has_a_bounded_range():
    unbounded = [f"{name} {param.opts[0]}" for name, param in numeric_options()
                 if (getattr(param.type, "min", None) is None or getattr(param.type, "max", None) is None)]
    assert unbounded == []
    not_finite = [f"{name} {param.opts[0]}" for name, param in numeric_options()
                  if isinstance(param.type, click.types.FloatParamType) and not isinstance(param.type, FiniteFloat)]
    assert not_finite == []
    assert len(list(numeric_options())) >= 40  # every command's, not none


@pytest.mark.parametrize("command, option, value, problem", [
    ("infer", "--temperature", "nan", "nan is not a finite number"),
    ("infer", "--temperature", "inf", "inf is not a finite number"),
    ("infer", "--top-p", "nan", "nan is not a finite number"),
    ("infer", "--top-p", "-inf", "-inf is not a finite number"),
    ("infer", "--gpu-memory-utilization", "nan", "nan is not a finite number"),
    ("infer", "--threads", "100000", "100000 is not in the range 1<=x<=1024"),
    ("infer", "--seed", str(2**64), f"{2**64} is not in the range 0<=x<={2**32 - 1}"),
    ("infer", "--seed", "-1", "-1 is not in the range"),
    ("infer", "--max-new-tokens", str(10**30), f"{10**30} is not in the range 1<=x<="),
    ("build-dpo-data", "--min-margin", "nan", "nan is not a finite number"),
    ("build-tiny-model", "--hidden-size", "9", "hidden size 9: must be a multiple of 8, so each of the 4 attention"),
    ("build-tiny-model", "--hidden-size", "12", "hidden size 12: must be a multiple of 8"),
    ("build-tiny-model", "--hidden-size", "100000", "100000 is not in the range 8<=x<=1024"),
    ("build-tiny-model", "--seed", str(2**40), f"{2**40} is not in the range 0<=x<="),
    ("demo", "--threads", "100000", "100000 is not in the range 1<=x<=1024"),
])
def test_a_bad_value_is_one_line_before_any_work(tmp_path, command, option, value, problem):
    required = {
        "infer": ["--ckpt", tmp_path / "no-model", "--input", TEST, "--output", tmp_path / "out.jsonl",
                  "--num-candidates", "2"],
        "build-dpo-data": ["--input", TRAIN, "--candidates", DEV, "--output", tmp_path / "dpo.jsonl"],
        "build-tiny-model": ["--output-dir", tmp_path / "tiny"],
        "demo": ["--workdir", tmp_path / "demo"],
    }[command]
    result = tools_cli(command, *required, option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}': {problem}" in result.output, result.output
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_the_hidden_sizes_allowed_are_those_a_model_runs_with():
    """The rule of `build-tiny-model --hidden-size` against transformers itself: 4 heads, 2 key/value heads."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from exaone.tiny import HEADS, KV_HEADS, hidden_size_problem

    for hidden in (8, 9, 10, 12, 16, 20, 24):
        try:
            config = LlamaConfig(vocab_size=16, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                                 num_attention_heads=HEADS, num_key_value_heads=KV_HEADS)
            LlamaForCausalLM(config)(torch.tensor([[1, 2, 3]]))
            runs = True
        except Exception:  # noqa: BLE001 - any failure: the width does not work
            runs = False
        assert (hidden_size_problem(hidden) is None) == runs, hidden


# --------------------------------------------------------------------------- ids in two Unicode forms


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_score_names_ids_that_differ_only_in_their_unicode_form(tmp_path, write_nikl):
    references = load_json(DEV)
    references[0]["id"] = "대화-0001"
    predictions = [dict(item) for item in references]
    predictions[0]["id"] = nfd("대화-0001")
    message = one_line_error(tools_cli("score", "--predictions", write_nikl(predictions, "p.json"), "--input",
                                       write_nikl(references, "r.json"), "--metrics", "rouge1"))
    twins = f"{nfd('대화-0001')!r} (NFD) and '대화-0001' (NFC) are the same id in two Unicode normalisation forms"
    assert twins in message
    assert "missing" not in message  # not also listed as one missing and one extra id


def test_one_file_with_an_id_in_two_forms_is_one_line(write_nikl):
    items = load_json(DEV)[:2]
    items[0]["id"], items[1]["id"] = "대화-0001", nfd("대화-0001")
    message = one_line_error(tools_cli("score", "--predictions", write_nikl(items), "--input", DEV))
    assert "(NFD) and '대화-0001' (NFC) are the same id in two Unicode normalisation forms" in message
    assert "first seen at index 0" in message


def test_candidates_with_an_id_in_the_other_form_are_named_as_such(tmp_path, write_nikl):
    items = load_json(TRAIN)[:2]
    items[0]["id"] = "대화-0001"
    candidates = tmp_path / "c.jsonl"
    row = {"id": nfd("대화-0001"), "candidates": ["가", "나"]}
    candidates.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    message = one_line_error(tools_cli("rerank", "--candidates", candidates, "--input", write_nikl(items),
                                       "--output", tmp_path / "out.json"))
    assert "is not in the data file as written" in message and "(NFD) and '대화-0001' (NFC)" in message


# --------------------------------------------------------------------------- a word longer than the budget


def long_word_dialogue(write_nikl):
    item = dict(load_json(TEST)[0])
    item["input"] = {**item["input"], "conversation": [{"speaker": "SD2000001", "utterance": "가나" * 30_000}]}
    return write_nikl([item, *load_json(TEST)[1:]])


def test_a_word_longer_than_the_budget_is_cut_counted_and_reported(tiny_model, tmp_path, write_nikl):
    from common.tokenizer import load_tokenizer
    from dataset_builders.nikl import load_nikl
    from dataset_builders.prompt import PromptBuilder

    data = long_word_dialogue(write_nikl)
    example = load_nikl(data)[0]
    prompt = PromptBuilder(tokenizer=load_tokenizer(tiny_model), max_prompt_tokens=300).build(example)
    assert prompt.cut_word and prompt.truncated and prompt.prompt_tokens <= 300
    assert "화자SD2000001: 가나가나" in prompt.messages[-1]["content"]
    result = tools_cli("infer", "--no-progress", "--threads", "1", "--max-new-tokens", "2", "--ckpt", tiny_model,
                       "--input", data, "--output", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    assert "1 word longer than the budget cut" in result.output
    example = dataclasses.replace(example, conversation=example.conversation[:1])
    with pytest.raises(Exception, match="leaves no room for any dialogue text"):  # not even one token fits
        PromptBuilder(tokenizer=load_tokenizer(tiny_model), max_prompt_tokens=20).build(example)
