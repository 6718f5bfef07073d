"""The documentation's CPU blocks: finding them, grouping them into sessions, and running a session as written.

A block marked "Runs as written on CPU" is a ```bash block right after :data:`MARKER`. The blocks of a
*session* run in order, one shell command per line, in one fresh working directory that holds the
repository's recipes and the sample files under the corpus's names and nothing else. The stage pages are one
session, :data:`PIPELINE`, in the order a reader runs them (each uses what the pages before it made), starting
with the set-up page, whose ``export`` line the reader's shell keeps; every other document with CPU blocks is a
session of its own, run after that set-up. Sessions are independent, so the suite can run them side by side
(tests/test_readme.py, tests/test_recipes.py), and a recipe that a session trains through the real Axolotl is
inspected on that run instead of being trained again (tests/test_recipes.py).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS_DIR = REPO / "docs"
DOCS = [README, *sorted(DOCS_DIR.glob("*.md"))]
MARKER = "*Runs as written on CPU (checked by `tests/test_readme.py`):*"
HUB_MODEL = "LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct"
GENERATING = ("tools infer", "tools select-checkpoint")
NEW_TOKENS = 16  # the random model never ends a summary by itself
# The stage pages, in the order a reader runs them: one session in one directory. The set-up page comes first.
PIPELINE = ("install.md", "convert.md", "sft-data.md", "recipes.md", "select-checkpoint.md", "inference.md",
            "scoring.md", "compare.md", "dpo-data.md", "rerank.md")
SETUP = DOCS_DIR / PIPELINE[0]
# Set by the set-up page's own `export` line, not by the test: without it Axolotl prints an upload error per
# telemetry event offline, and a session fails on these.
SETUP_QUIETS = ("AXOLOTL_DO_NOT_TRACK", "DO_NOT_TRACK")
TELEMETRY_ERRORS = ("error uploading", "Failed to send telemetry")  # posthog's and Axolotl's, per failed upload


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


@dataclass(frozen=True)
class Session:
    """Documents whose CPU blocks run, in this order, in one working directory."""

    name: str
    docs: tuple[Path, ...]

    def commands(self) -> list[tuple[Path, str]]:
        """(document, command) for every command of every marked block, in order."""
        return [(doc, command) for doc in self.docs for block in cpu_blocks(doc.read_text(encoding="utf-8"))
                for command in commands(block)]

    def trained_recipes(self) -> dict[str, str]:
        """Recipe file name → the CPU config the session trains it with: a `tools cpu-overlay recipes/NAME.yml`
        command writes CONFIG (the other .yml it names), and a later `axolotl train CONFIG` trains it."""
        overlays: dict[str, str] = {}  # config → recipe
        trained: dict[str, str] = {}
        for _, line in self.commands():
            for part in re.split(r"&&|;|\|", line):
                words = shlex.split(part)
                if words[:2] == ["tools", "cpu-overlay"]:
                    recipe = next(word for word in words[2:] if word.startswith("recipes/"))
                    for word in words[2:]:
                        if word.endswith((".yml", ".yaml")) and word != recipe:
                            overlays[word] = recipe
                elif words[:2] == ["axolotl", "train"] and len(words) > 2 and words[2] in overlays:
                    trained.setdefault(Path(overlays[words[2]]).name, words[2])
        return trained


def sessions() -> list[Session]:
    """The pipeline, then every other document with CPU blocks alone (named after its file)."""
    pipeline = Session("pipeline", tuple(DOCS_DIR / name for name in PIPELINE))
    marked = [doc for doc in DOCS if doc not in pipeline.docs and cpu_blocks(doc.read_text(encoding="utf-8"))]
    return [pipeline, *(Session(doc.name, (doc,)) for doc in marked)]


def trained_by_docs() -> dict[str, tuple[Session, str]]:
    """Recipe file name → (the first session that trains it, the config it trains with)."""
    found: dict[str, tuple[Session, str]] = {}
    for session in sessions():
        for recipe, config in session.trained_recipes().items():
            found.setdefault(recipe, (session, config))
    return found


@dataclass
class SessionRun:
    work: Path       # the working directory the commands ran in
    ran: list[str]   # the commands, as written, all of which succeeded


def run_session(session: Session, root: Path) -> dict:
    """Run ``session`` as written in ``root/work`` (the hub model is a tiny checkpoint under ``root/hub``) and stop at
    the first failing command; each command's output is kept in ``root/logs/NN.log``. Returns ``work`` and the
    commands that ``ran``, or a ``failure`` naming the command, its exit code and the end of its output."""
    from common.env import offline_env
    from dataset_builders.nikl import SPLITS, sample_files
    from exaone.tiny import build_tiny_exaone

    work, logs = root / "work", root / "logs"
    work.mkdir()
    logs.mkdir()
    for name in ("recipes", "deepspeed_configs"):
        (work / name).symlink_to(REPO / name)
    for split, path in zip(SPLITS, sample_files()):
        (work / f"일상대화요약_{split}.json").write_bytes(path.read_bytes())
    hub_model = build_tiny_exaone(root / "hub" / HUB_MODEL.split("/")[-1])
    env = {**offline_env(), "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in SETUP_QUIETS:  # the set-up page's `export` line must be what keeps Axolotl quiet offline
        env.pop(key, None)
    if SETUP not in session.docs:  # the reader's shell has the set-up (its exports) already
        for _, command in Session("set-up", (SETUP,)).commands():
            export(command, env)
    ran = []
    for number, (doc, command) in enumerate(session.commands(), start=1):
        if export(command, env):  # the shell the reader keeps open: later commands see it
            ran.append(command)
            continue
        line = substitute(command, str(hub_model))
        done = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=work, env=env,
                              capture_output=True, text=True, timeout=900)
        output = done.stdout + done.stderr
        (logs / f"{number:02d}.log").write_text(f"$ {line}\n{output}", encoding="utf-8")
        if done.returncode != 0:
            return {"failure": f"{doc.name}: `{command}` failed (exit {done.returncode}):\n{output[-3000:]}"}
        noise = [text for text in TELEMETRY_ERRORS if text in output]
        if noise:
            return {"failure": f"{doc.name}: `{command}` printed telemetry errors offline ({', '.join(noise)})"}
        ran.append(command)
    return {"work": str(work), "ran": ran}


def export(command: str, env: dict[str, str]) -> bool:
    """An ``export NAME=VALUE …`` line sets ``env`` for the commands after it (True); any other command: False."""
    if not command.startswith("export "):
        return False
    env.update(word.split("=", 1) for word in shlex.split(command)[1:])
    return True
