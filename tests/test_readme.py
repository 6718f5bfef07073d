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


# --------------------------------------------------------------------------- the CPU blocks run as written

MARKER = "*Runs as written on CPU (checked by `tests/test_readme.py`):*"
HUB_MODEL = "LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct"
GENERATING = ("tools infer", "tools select-checkpoint")
NEW_TOKENS = 16  # the random model never ends a summary by itself
README_QUIETS = ("AXOLOTL_DO_NOT_TRACK", "DO_NOT_TRACK")  # set by the README's `export` line, not by the test
TELEMETRY_ERRORS = ("error uploading", "Failed to send telemetry")  # posthog's and Axolotl's, per failed upload


def cpu_blocks(text: str) -> list[str]:
    """The ```bash blocks right after the marker line (blank lines between them allowed)."""
    pattern = re.escape(MARKER) + r"\s*\n```bash\n(.*?)```"
    return re.findall(pattern, text, flags=re.DOTALL)


def commands(block: str) -> list[str]:
    """One shell command per line: backslash continuations joined, comments dropped."""
    return shell_lines(f"```bash\n{block}```")


def substitute(command: str, hub_model: str) -> str:
    """The documented rule: the hub id is the tiny EXAONE-layout checkpoint; generation is capped."""
    command = command.replace(HUB_MODEL, hub_model)
    if command.startswith(GENERATING) and "--max-new-tokens" not in command:
        command += f" --max-new-tokens {NEW_TOKENS}"
    return command


def test_marked_blocks_exist_and_name_only_cpu_commands():
    blocks = [block for doc in DOCS for block in cpu_blocks(doc.read_text(encoding="utf-8"))]
    assert len(cpu_blocks(README)) >= 8  # convert, data, train, select, infer, score, DPO data, rerank
    for block in blocks:
        for command in commands(block):
            assert "accelerate launch" not in command and "--deepspeed" not in command, command
            if command.startswith("axolotl "):
                assert "configs/" in command or "outputs/" in command, f"a GPU recipe in a CPU block: {command}"


@pytest.mark.axolotl
def test_cpu_blocks_run_as_written(tmp_path):
    """Every marked block of README.md, then of docs/*.md, in order, in one fresh working directory that has
    the repository's recipes, the sample files under the corpus's names and nothing else."""
    import os
    import subprocess
    import sys

    from common.checkout import sample_files
    from common.env import offline_env
    from exaone.tiny import build_tiny_exaone

    work = tmp_path / "work"
    work.mkdir()
    for name in ("recipes", "deepspeed_configs"):
        (work / name).symlink_to(REPO / name)
    for split, path in zip(("train", "dev", "test"), sample_files()):
        (work / f"일상대화요약_{split}.json").write_bytes(path.read_bytes())
    hub_model = build_tiny_exaone(tmp_path / "hub" / "EXAONE-3.0-7.8B-Instruct")
    env = {**offline_env(), "OMP_NUM_THREADS": "1",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in README_QUIETS:  # the README's own `export` line must be what keeps Axolotl quiet offline
        env.pop(key, None)
    ran = []
    for doc in DOCS:
        for block in cpu_blocks(doc.read_text(encoding="utf-8")):
            for command in commands(block):
                if command.startswith("export "):  # the shell the reader keeps open: later commands see it
                    env.update(word.split("=", 1) for word in shlex.split(command)[1:])
                    continue
                line = substitute(command, str(hub_model))
                result = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=work, env=env,
                                        capture_output=True, text=True, timeout=900)
                output = result.stdout + result.stderr
                assert result.returncode == 0, (f"{doc.name}: `{command}` failed (exit {result.returncode}):\n"
                                                + output[-3000:])
                noise = [text for text in TELEMETRY_ERRORS if text in output]
                assert not noise, f"{doc.name}: `{command}` printed telemetry errors ({noise}) offline"
                ran.append(command)
    assert (work / "outputs" / "exaone-lora" / "best").exists() and (work / "result.json").is_file()
    assert (work / "data" / "dpo" / "train.jsonl").is_file() and (work / "results" / "test_mbr.json").is_file()
    assert len(ran) >= 15
