"""The documentation's CPU blocks: finding them, grouping them into sessions, and running a session as written.

A block marked "Runs as written on CPU" is a ```bash block right after :data:`MARKER`. The blocks of a
*session* run in order, one shell command per line, in one fresh working directory that holds the
repository's recipes and the sample files under the corpus's names and nothing else. The README's blocks are
one session; a document that continues it (uses its outputs: :data:`CONTINUES_README`) runs after it in
the same directory; every other document with CPU blocks is a session of its own. Sessions are independent,
so the suite can run them side by side (tests/test_readme.py), and a recipe that a session trains through
the real Axolotl is inspected on that run instead of being trained again (tests/test_recipes.py).
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
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
MARKER = "*Runs as written on CPU (checked by `tests/test_readme.py`):*"
HUB_MODEL = "LGAI-EXAONE/EXAONE-3.0-7.8B-Instruct"
GENERATING = ("tools infer", "tools select-checkpoint")
NEW_TOKENS = 16  # the random model never ends a summary by itself
# These documents' blocks read the README session's outputs (a checkpoint, predictions): they run after it.
CONTINUES_README = ("inference.md", "scoring.md")
# Set by the README's own `export` line (its set-up), not by the test: without it Axolotl prints an upload error
# per telemetry event offline, and a session fails on these.
README_QUIETS = ("AXOLOTL_DO_NOT_TRACK", "DO_NOT_TRACK")
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

    docs: tuple[Path, ...]

    @property
    def name(self) -> str:
        return "+".join(doc.name for doc in self.docs)

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
    """The README with the documents that continue it, then every other document with CPU blocks alone."""
    marked = [doc for doc in DOCS if cpu_blocks(doc.read_text(encoding="utf-8"))]
    readme = Session((README, *(doc for doc in marked if doc.name in CONTINUES_README)))
    return [readme, *(Session((doc,)) for doc in marked if doc not in readme.docs)]


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
    from common.checkout import sample_files
    from common.env import offline_env
    from exaone.tiny import build_tiny_exaone

    work, logs = root / "work", root / "logs"
    work.mkdir()
    logs.mkdir()
    for name in ("recipes", "deepspeed_configs"):
        (work / name).symlink_to(REPO / name)
    for split, path in zip(("train", "dev", "test"), sample_files()):
        (work / f"일상대화요약_{split}.json").write_bytes(path.read_bytes())
    hub_model = build_tiny_exaone(root / "hub" / HUB_MODEL.split("/")[-1])
    env = {**offline_env(), "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in README_QUIETS:  # the README's `export` line must be what keeps Axolotl quiet offline
        env.pop(key, None)
    if README not in session.docs:  # the reader's shell has the README's set-up (its exports) already
        for _, command in Session((README,)).commands():
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
