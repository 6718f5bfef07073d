"""The README is the front door: every command, option, file and make target it names must exist."""

import re
import shlex

import pytest

from conftest import REPO
from tools.cli import cli

README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shell_lines(text: str) -> list[str]:
    """Command lines of the ```bash blocks, with backslash continuations joined and comments dropped."""
    lines = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, flags=re.DOTALL):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


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
