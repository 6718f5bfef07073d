"""`tools check-data`: rows tokenised by Axolotl itself for a recipe pass on what `build-sft-data` writes, and each
check fails, naming itself and the symptom, on the mutation it exists for — a loss on the prompt, an untrained
end-of-turn token, an inference prompt unlike the training one, a row longer than sequence_len. No training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

import dataset_builders.prompt as prompt_module
from common.io import read_jsonl, write_jsonl
from helpers import REPO, TRAIN, one_line_error, tools_cli
from dataset_builders.nikl import load_nikl
from dataset_builders.prompt import PromptBuilder, parse_user_message, user_message
from training.check_data import check_rows

RECIPES = REPO / "recipes"
ROWS = 4  # enough to show every row is checked; each check fails on all of them


@pytest.fixture(scope="module")
def sft_rows(tiny_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("check-data") / "sft.jsonl"
    result = tools_cli("build-sft-data", "--input", TRAIN, "--output", path, "--recipe", RECIPES / "exaone_sft.yml",
                       "--tokenizer", tiny_model)
    assert result.exit_code == 0, result.output
    write_jsonl(path, read_jsonl(path)[:ROWS])
    return path


@pytest.fixture(scope="module")
def dpo_rows(sft_rows) -> Path:
    """Pairs as `tools build-dpo-data` writes them: the prompt turns, the reference chosen, another rejected."""
    rows = read_jsonl(sft_rows)
    pairs = [{"id": row["id"], "messages": row["messages"][:2], "chosen": row["messages"][2],
              "rejected": {"role": "assistant", "content": rows[(index + 1) % len(rows)]["messages"][2]["content"]},
              "score_chosen": 100.0, "score_rejected": 20.0} for index, row in enumerate(rows)]
    path = sft_rows.with_name("dpo.jsonl")
    write_jsonl(path, pairs)
    return path


def mutated_recipe(tmp_path: Path, name: str, **changes) -> Path:
    recipe = yaml.safe_load((RECIPES / name).read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key in ("roles_to_train", "train_on_eos"):
            recipe["datasets"][0][key] = value
        else:
            recipe[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


def mutated_rows(tmp_path: Path, rows: Path, change) -> Path:
    path = tmp_path / f"mutated-{rows.name}"
    write_jsonl(path, [change(json.loads(json.dumps(row))) for row in read_jsonl(rows)])
    return path


def failures(checked) -> dict[str, str]:
    """check → the problem of the first row failing it; every row must fail it alike."""
    found = {}
    for check in ("trained", "prompt", "length"):
        rows = checked.failing(check)
        if rows:
            assert len(rows) == len(checked.rows), f"{check}: {len(rows)} of {len(checked.rows)} rows"
            found[check] = rows[0].problems[check]
    return found


def test_sft_rows_pass_and_the_trained_tokens_are_shown(sft_rows, tiny_model):
    result = tools_cli("check-data", "--recipe", RECIPES / "exaone_sft.yml", "--input", sft_rows,
                       "--tokenizer", tiny_model)
    assert result.exit_code == 0, result.output
    summary = load_nikl(TRAIN)[0].output
    assert f"[|assistant|]⟦{summary}[|endofturn|]⟧" in result.output  # the loss: the summary and its end of turn
    assert "[|system|]You are EXAONE model" in result.output
    for line in ("PASS 1. trained tokens", "PASS 2. prompt = the one `tools infer` builds",
                 "PASS 3. fits sequence_len"):
        assert line in result.output and f"{ROWS}/{ROWS} rows" in result.output, result.output
    assert "roles_to_train ['assistant'], train_on_eos turn" in result.output


def test_checking_leaves_the_process_streams_and_files_as_they_were(sft_rows, tiny_model):
    """Axolotl's config loader replaces sys.stdout and sys.stderr by copies to a debug log for the rest of the
    process; check_rows (a library call, also inside `tools demo` and tests) gives them back and closes the log."""
    import axolotl.utils.tee as tee

    before = sys.stdout, sys.stderr
    assert check_rows(RECIPES / "exaone_lora.yml", sft_rows, tokenizer=str(tiny_model)).passed
    assert (sys.stdout, sys.stderr) == before
    assert tee._file_handle is None and not tee._tee_installed


@pytest.mark.parametrize("recipe", ["exaone_lora.yml", "exaone_qlora.yml"])
def test_the_adapter_recipes_train_the_same_tokens(recipe, sft_rows, tiny_model):
    assert check_rows(RECIPES / recipe, sft_rows, tokenizer=str(tiny_model)).passed


def test_dpo_pairs_pass(dpo_rows, tiny_model):
    result = tools_cli("check-data", "--recipe", RECIPES / "exaone_dpo.yml", "--input", dpo_rows,
                       "--tokenizer", tiny_model)
    assert result.exit_code == 0, result.output
    assert "DPO rows" in result.output and "chosen:   ⟦" in result.output and "rejected: ⟦" in result.output
    assert result.output.count("[|endofturn|]⟧") == 2  # each completion ends its turn


@pytest.mark.parametrize("changes, symptom", [
    ({"roles_to_train": ["user", "assistant"]}, "loss on the prompt"),
    ({"train_on_inputs": True}, "loss on the prompt"),
    ({"train_on_eos": "none"}, "the end-of-turn token [|endofturn|] is not trained"),
])
def test_a_recipe_training_the_wrong_tokens_fails_check_1(changes, symptom, sft_rows, tiny_model, tmp_path):
    checked = check_rows(mutated_recipe(tmp_path, "exaone_sft.yml", **changes), sft_rows, tokenizer=str(tiny_model))
    assert failures(checked).keys() == {"trained"} and symptom in failures(checked)["trained"]


def test_the_cli_names_the_row_and_the_check_and_exits_1(sft_rows, tiny_model, tmp_path):
    recipe = mutated_recipe(tmp_path, "exaone_sft.yml", train_on_eos="none")
    result = tools_cli("check-data", "--recipe", recipe, "--input", sft_rows, "--tokenizer", tiny_model)
    error = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and error.startswith("Error: row 1 (id 'nikl-train-000001') fails check 1."), error
    assert "not trained" in error and f"{ROWS} of {ROWS} rows" in error
    assert "FAIL 1. trained tokens" in result.output and "⟦" in result.output  # the failing row, decoded


@pytest.mark.parametrize("change, symptom", [
    (lambda row: {**row, "messages": row["messages"][1:]}, "part at prompt token 1"),  # the system turn dropped
    (lambda row: {**row, "messages": [{**row["messages"][0], "content": "You are a helpful AI assistant."},
                                      *row["messages"][1:]]}, "part at prompt token"),  # another system prompt
    (lambda row: {**row, "messages": [row["messages"][0], {**row["messages"][1],
                                                           "content": row["messages"][1]["content"] + "\n"},
                                      row["messages"][2]]}, "not the prompt `tools infer` builds"),  # a newline added
])
def test_rows_prompted_unlike_inference_fail_check_2(change, symptom, sft_rows, tiny_model, tmp_path):
    rows = mutated_rows(tmp_path, sft_rows, change)
    checked = check_rows(RECIPES / "exaone_sft.yml", rows, tokenizer=str(tiny_model))
    assert failures(checked).keys() == {"prompt"} and symptom in failures(checked)["prompt"]


def test_an_inference_prompt_changed_in_the_generation_code_fails_check_2(sft_rows, tiny_model, monkeypatch):
    """The other side: the rows are as built, but `tools infer`'s prompt path changes (a newline after each
    utterance; then the system turn dropped)."""
    monkeypatch.setattr(prompt_module, "conversation_line", lambda turn: f"화자{turn.speaker}: {turn.utterance}\n")
    checked = check_rows(RECIPES / "exaone_sft.yml", sft_rows, tokenizer=str(tiny_model))
    assert failures(checked).keys() == {"prompt"} and "part at prompt token" in failures(checked)["prompt"]
    monkeypatch.undo()
    messages = PromptBuilder.messages
    monkeypatch.setattr(PromptBuilder, "messages", lambda self, *args: messages(self, *args)[1:])
    checked = check_rows(RECIPES / "exaone_sft.yml", sft_rows, tokenizer=str(tiny_model))
    assert failures(checked).keys() == {"prompt"} and "part at prompt token 1" in failures(checked)["prompt"]


def test_a_system_prompt_other_than_inferences_fails_check_2(sft_rows, tiny_model):
    checked = check_rows(RECIPES / "exaone_sft.yml", sft_rows, tokenizer=str(tiny_model), system_prompt="reference")
    assert failures(checked).keys() == {"prompt"}


def test_rows_longer_than_sequence_len_fail_check_3(sft_rows, dpo_rows, tiny_model, tmp_path):
    for name, rows in (("exaone_sft.yml", sft_rows), ("exaone_dpo.yml", dpo_rows)):
        checked = check_rows(mutated_recipe(tmp_path, name, sequence_len=64), rows, tokenizer=str(tiny_model))
        assert failures(checked).keys() == {"length"} and "sequence_len 64" in failures(checked)["length"], name


def test_dpo_pairs_prompted_unlike_inference_fail_check_2(dpo_rows, tiny_model, tmp_path):
    rows = mutated_rows(tmp_path, dpo_rows, lambda row: {**row, "messages": row["messages"][1:]})
    checked = check_rows(RECIPES / "exaone_dpo.yml", rows, tokenizer=str(tiny_model))
    assert failures(checked).keys() == {"prompt"}


def test_rows_for_another_kind_of_recipe_are_one_line(sft_rows, tiny_model):
    error = one_line_error(tools_cli("check-data", "--recipe", RECIPES / "exaone_dpo.yml", "--input", sft_rows,
                                     "--tokenizer", tiny_model))
    assert "'chosen', 'rejected'" in error


def test_a_tokenizer_that_is_not_there_is_one_line(sft_rows, tmp_path, monkeypatch):
    error = one_line_error(tools_cli("check-data", "--recipe", RECIPES / "exaone_sft.yml", "--input", sft_rows,
                                     "--tokenizer", tmp_path / "missing"))
    assert "--tokenizer" in error and "no such directory" in error
    monkeypatch.chdir(tmp_path)  # where the recipe's models/… is not
    error = one_line_error(tools_cli("check-data", "--recipe", RECIPES / "exaone_sft.yml", "--input", sft_rows))
    assert "the base_model of" in error and "pass --tokenizer DIR" in error


def test_the_user_turn_parses_back_into_its_dialogue():
    for example in load_nikl(TRAIN):
        text = user_message(example.conversation, example.subject_keyword)
        conversation, keywords = parse_user_message(text)
        assert (tuple(conversation), tuple(keywords)) == (example.conversation, example.subject_keyword)
    conversation, _ = parse_user_message("[Conversation]\n화자A: 첫 줄\n둘째 줄\n\n[Question]\n위 a 주제에 대한 대화를 요약해주세요.")
    assert [(turn.speaker, turn.utterance) for turn in conversation] == [("A", "첫 줄\n둘째 줄")]
    for text in ("요약해주세요.", "[Conversation]\n그냥 글\n\n[Question]\n위 a 주제에 대한 대화를 요약해주세요.",
                 "[Conversation]\n화자A: x\n\n[Question]\n위 a 주제에 대한 대화를 요약해주세요.\n"):
        assert parse_user_message(text) is None
