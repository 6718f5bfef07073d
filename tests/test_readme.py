"""The README is the front door and docs/ the manual: every command, option, file, make target and link they name
must exist, every page is reachable from the index, no paragraph stands on two pages, and the blocks marked
"Runs as written on CPU" run as written (tests/doc_blocks.py)."""

import re
import shlex
from pathlib import Path

import pytest

from helpers import REPO
from doc_blocks import DOCS, DOCS_DIR, PIPELINE, README, commands, cpu_blocks, sessions, shell_lines
from tools.cli import cli

README_TEXT = README.read_text(encoding="utf-8")
INDEX = DOCS_DIR / "README.md"
# What the pipeline runs, stage by stage; the README's table names each.
STAGE_COMMANDS = {"convert-exaone", "build-sft-data", "cpu-overlay", "select-checkpoint", "infer", "score",
                  "compare", "build-dpo-data", "rerank"}


def prose(text: str) -> str:
    """``text`` without its fenced code blocks (their `# comments` are not headings, their lines not prose)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def inline_commands(text: str, program: str) -> list[str]:
    """The inline code spans of the prose that start with ``program`` (`tools infer --ckpt …`)."""
    return [span for span in re.findall(r"`([^`\n]+)`", prose(text)) if span.startswith(f"{program} ")]


def words_of(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an inline span with an unbalanced quote: the words are still the words
        return command.split()


def tools_invocations(text: str) -> list[list[str]]:
    """The arguments of every `tools` command in a shell block or an inline code span, e.g. ['infer', '--ckpt', …]."""
    calls = []
    for line in [*shell_lines(text), *inline_commands(text, "tools")]:
        for part in re.split(r"&&|\|", line):
            words = words_of(part.strip())
            if words and words[0] == "tools" and len(words) > 1 and re.fullmatch(r"[a-z][a-z-]*", words[1]):
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


def test_the_option_check_reads_blocks_and_inline_spans():
    text = "Run `tools infer --ckpt x --no-such-option`.\n\n```bash\ntools score --input y\n```\n"
    assert tools_invocations(text) == [["score", "--input", "y"], ["infer", "--ckpt", "x", "--no-such-option"]]


def test_readme_names_every_stage_command():
    named = {words[0] for words in tools_invocations(README_TEXT)}
    assert STAGE_COMMANDS <= named, f"the README's pipeline table lacks {sorted(STAGE_COMMANDS - named)}"


def test_every_tools_command_is_documented():
    named = {words[0] for doc in DOCS for words in tools_invocations(doc.read_text(encoding="utf-8"))}
    assert set(cli.commands) <= named, f"no page shows {sorted(set(cli.commands) - named)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_repository_file_named_exists(doc):
    text = doc.read_text(encoding="utf-8")
    folders = ("recipes|deepspeed_configs|constraints|docs|benchmarks|tests|common|dataset_builders|eval|exaone|"
               "generation|training|demo|tools")
    pattern = rf"(?<![\w/.-])((?:{folders})/[\w./-]+\.(?:yml|json|md|py|txt|png))"
    for path in set(re.findall(pattern, text)):
        assert (REPO / path).exists(), f"{doc.name} names {path}, which does not exist"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_make_target_named_exists(doc):
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    text = doc.read_text(encoding="utf-8")
    for line in [*shell_lines(text), *inline_commands(text, "make")]:
        words = [word for word in line.split() if "=" not in word]  # `DEMO_FAST=1 make demo`, `make test PYTHON=…`
        if "make" in words and words.index("make") + 1 < len(words):
            target = words[words.index("make") + 1]
            assert target in targets, f"{doc.name} runs `make {target}`, which the Makefile lacks"


# --------------------------------------------------------------------------- the front page and the manual

def test_readme_is_a_front_page():
    assert len(README_TEXT.splitlines()) <= 250, "the README is a front page: the manual goes in docs/"
    blocks = "\n".join(shell_lines(README_TEXT))
    assert "make demo" in blocks and "make test" in blocks, "the README shows the two set-up commands"
    assert "(docs/README.md)" in README_TEXT, "the README links the documentation's index"


def links(doc: Path) -> list[tuple[Path, str]]:
    """(target file, anchor) of every relative link and image of ``doc``'s prose; anchor '' when none."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        found.append(((doc.parent / path).resolve() if path else doc, anchor))
    return found


def anchors(doc: Path) -> set[str]:
    """The anchors GitHub gives ``doc``'s headings: lower case, punctuation dropped, spaces as hyphens, and -1, -2 …
    after a repeated one."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(doc.read_text(encoding="utf-8")), flags=re.MULTILINE):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_relative_link_resolves(doc):
    for path, anchor in links(doc):
        assert path.exists(), f"{doc.name} links {path.relative_to(REPO)}, which does not exist"
        if anchor:
            assert path.suffix == ".md" and anchor in anchors(path), \
                f"{doc.name} links #{anchor} of {path.name}, which has no such heading"


def test_a_heading_s_anchor_is_github_s(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text("# Is a difference real? `tools compare`\n\n```bash\n# a comment\n```\n## GPU: EXAONE-7.8B\n"
                   "## Notes\n## Notes\n", encoding="utf-8")
    assert anchors(doc) == {"is-a-difference-real-tools-compare", "gpu-exaone-78b", "notes", "notes-1"}


def test_the_index_links_every_page():
    linked = {path for path, _ in links(INDEX)}
    pages = set(DOCS_DIR.glob("*.md")) - {INDEX}
    assert pages <= linked, f"docs/README.md does not link {sorted(page.name for page in pages - linked)}"


def paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a page (no headings, tables, code or pictures), whitespace normalised."""
    found = []
    for block in re.split(r"\n\s*\n", prose(text)):
        lines = [line for line in block.splitlines() if not line.lstrip().startswith(("#", "|", "!", "<!--"))]
        found.append(" ".join(" ".join(lines).split()))
    return [paragraph for paragraph in found if len(paragraph) >= 120]


def repeated_paragraphs(pages: dict[str, str]) -> list[str]:
    """One line per paragraph that stands on a page after standing on an earlier one."""
    seen: dict[str, str] = {}
    repeated = []
    for name, text in pages.items():
        for paragraph in paragraphs(text):
            if paragraph in seen:
                repeated.append(f"{name} repeats a paragraph of {seen[paragraph]}: {paragraph[:80]}…")
            seen.setdefault(paragraph, name)
    return repeated


def test_no_paragraph_stands_on_two_pages():
    problems = repeated_paragraphs({doc.name: doc.read_text(encoding="utf-8") for doc in DOCS})
    assert not problems, "\n".join(problems)


def test_a_page_copied_into_another_is_caught():
    page = "# A\n\n" + "A paragraph long enough to count as one of the page's own words, " * 2 + "\n\n| a | table |\n"
    assert repeated_paragraphs({"a.md": page, "b.md": page}) == [
        f"b.md repeats a paragraph of a.md: {paragraphs(page)[0][:80]}…"]
    assert repeated_paragraphs({"a.md": page, "b.md": "# B\n\nOther words.\n"}) == []


# --------------------------------------------------------------------------- the CPU blocks run as written

SESSIONS = sessions()
PIPELINE_SESSION = SESSIONS[0]


def test_marked_blocks_name_only_cpu_commands():
    blocks = [block for doc in DOCS for block in cpu_blocks(doc.read_text(encoding="utf-8"))]
    for block in blocks:
        for command in commands(block):
            assert "accelerate launch" not in command and "--deepspeed" not in command, command
            if command.startswith("axolotl "):
                assert "configs/" in command or "outputs/" in command, f"a GPU recipe in a CPU block: {command}"


def test_the_pipeline_session_runs_every_stage_page_in_order():
    assert [doc.name for doc in PIPELINE_SESSION.docs] == list(PIPELINE)
    for doc in PIPELINE_SESSION.docs:
        assert cpu_blocks(doc.read_text(encoding="utf-8")), f"{doc.name}, a pipeline page, has no marked block"
    ran = {words[0] for _, command in PIPELINE_SESSION.commands()
           for words in tools_invocations(f"```bash\n{command}\n```")}
    assert STAGE_COMMANDS <= ran, f"the pipeline session does not run {sorted(STAGE_COMMANDS - ran)}"
    assert PIPELINE_SESSION.commands()[0][1].startswith("export "), "the session starts with the reader's set-up"


def test_every_documentation_session_is_run_by_a_test():
    """The pipeline runs below; docs/development.md's session in tests/test_recipes.py, beside the recipe tests that
    inspect its `exaone_qlora` run, so that the worker that needs that run makes it instead of waiting for this
    file's worker (pytest-xdist hands out a file at a time)."""
    assert [session.name for session in SESSIONS] == ["pipeline", "development.md"]


@pytest.mark.axolotl
def test_cpu_blocks_run_as_written(doc_session):
    """Every marked block of the pipeline's pages, in order, in one fresh working directory that has the repository's
    recipes, the sample files under the corpus's names and nothing else (doc_blocks.run_session)."""
    run = doc_session(PIPELINE_SESSION)
    assert run.ran == [command for _, command in PIPELINE_SESSION.commands()]


@pytest.mark.axolotl
def test_the_pipeline_session_ends_with_a_submission(doc_session):
    run = doc_session(PIPELINE_SESSION)
    work = run.work
    assert (work / "outputs" / "exaone-lora" / "best").exists() and (work / "result.json").is_file()
    assert len(run.ran) >= 15


# (Three `axolotl` tests in this file, not two: pytest-xdist gives a worker whose file has two or fewer tests left a
# second file at once, which under `-m axolotl` (CI's Python 3.11 leg) put the recipe tests behind this session.)
@pytest.mark.axolotl
def test_the_pipeline_session_makes_dpo_pairs_and_an_mbr_submission(doc_session):
    work = doc_session(PIPELINE_SESSION).work
    assert (work / "data" / "dpo" / "train.jsonl").is_file() and (work / "results" / "test_mbr.json").is_file()
