"""The README is the front door: every command, option, file and make target it names must exist."""

import re
import shlex

import pytest

from conftest import REPO
from doc_blocks import CONTINUES_README, DOCS, commands, cpu_blocks, sessions, shell_lines
from tools.cli import cli

README = (REPO / "README.md").read_text(encoding="utf-8")


def tools_invocations(text: str) -> list[list[str]]:
    calls = []
    for line in shell_lines(text):
        for part in re.split(r"&&|\|", line):
            words = shlex.split(part.strip())
            if words and words[0] == "tools":
                calls.append(words[1:])
    return calls


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_tools_command_and_option_exists(doc):
    calls = tools_invocations(doc.read_text(encoding="utf-8"))
    for words in calls:
        command = cli.commands.get(words[0])
        assert command is not None, f"{doc.name}: `tools {words[0]}` is not a command"
        known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words[1:]:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"{doc.name}: `tools {words[0]}` has no option {word}"


def test_readme_shows_every_stage_command():
    named = {words[0] for words in tools_invocations(README)}
    assert {"build-sft-data", "build-dpo-data", "infer", "score", "rerank", "cpu-overlay", "demo"} <= named


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_repository_file_named_exists(doc):
    text = doc.read_text(encoding="utf-8")
    pattern = r"(?<![\w/.-])((?:recipes|deepspeed_configs|docs|benchmarks|tools|eval|dataset_builders|tests)/[\w./-]+\.(?:yml|json|md|py))"
    for path in set(re.findall(pattern, text)):
        assert (REPO / path).exists(), f"{doc.name} names {path}, which does not exist"


def test_every_make_target_named_exists():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    for line in shell_lines(README):
        words = line.split()
        if "make" in words:
            target = words[words.index("make") + 1]
            assert target in targets, f"README runs `make {target}`, which the Makefile lacks"


# --------------------------------------------------------------------------- the CPU blocks run as written

SESSIONS = sessions()


def test_marked_blocks_exist_and_name_only_cpu_commands():
    blocks = [block for doc in DOCS for block in cpu_blocks(doc.read_text(encoding="utf-8"))]
    assert len(cpu_blocks(README)) >= 8  # convert, data, train, select, infer, score, DPO data, rerank
    for block in blocks:
        for command in commands(block):
            assert "accelerate launch" not in command and "--deepspeed" not in command, command
            if command.startswith("axolotl "):
                assert "configs/" in command or "outputs/" in command, f"a GPU recipe in a CPU block: {command}"


def test_documents_that_continue_the_readme_session_have_blocks():
    assert [doc.name for doc in SESSIONS[0].docs] == ["README.md", *sorted(CONTINUES_README)]


def test_every_documentation_session_is_run_by_a_test():
    """The README's session runs below; docs/recipes.md's in tests/test_recipes.py, beside the recipe tests that
    inspect its `exaone_qlora` run, so that the worker that needs that run makes it instead of waiting for this
    file's worker (pytest-xdist hands out a file at a time)."""
    assert [session.name for session in SESSIONS] == ["README.md+inference.md+scoring.md", "recipes.md"]


@pytest.mark.axolotl
def test_cpu_blocks_run_as_written(doc_session):
    """Every marked block of the README session's documents, in order, in one fresh working directory that has
    the repository's recipes, the sample files under the corpus's names and nothing else (doc_blocks.run_session)."""
    session = SESSIONS[0]
    run = doc_session(session)
    assert run.ran == [command for _, command in session.commands()]


@pytest.mark.axolotl
def test_readme_session_ends_with_a_submission(doc_session):
    run = doc_session(SESSIONS[0])
    work = run.work
    assert (work / "outputs" / "exaone-lora" / "best").exists() and (work / "result.json").is_file()
    assert len(run.ran) >= 15


# (Three `axolotl` tests in this file, not two: pytest-xdist gives a worker whose file has two or fewer tests left a
# second file at once, which under `-m axolotl` (CI's Python 3.11 leg) put the recipe tests behind this session.)
@pytest.mark.axolotl
def test_readme_session_makes_dpo_pairs_and_an_mbr_submission(doc_session):
    work = doc_session(SESSIONS[0]).work
    assert (work / "data" / "dpo" / "train.jsonl").is_file() and (work / "results" / "test_mbr.json").is_file()
