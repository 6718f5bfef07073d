"""`tools check-data`: do training and inference see the same prompt, and is the loss where it belongs?

The rows are tokenised the way Axolotl will for a recipe — by Axolotl itself: the recipe is loaded with
Axolotl's own config loader (``axolotl.cli.config.load_cfg``, after the CPU overlay, which changes nothing
that tokenisation reads), the tokenizer with Axolotl's loader, SFT rows by the recipe's dataset strategy
(``chat_template``: ``input_ids`` and ``labels``), DPO rows by Axolotl's preference transform
(``chat_template.default``) and then as TRL's DPO trainer tokenises its prompt and completions. Three checks,
per row:

1. **trained tokens** — SFT: the tokens with a label (``labels != -100``) are exactly the assistant summary
   plus the end-of-turn token (``[|endofturn|]``), and nothing of the system or user turn; DPO: the chosen
   and the rejected completion each are their text plus that token. A loss on the prompt
   (``roles_to_train`` with user/system, ``train_on_inputs``) or an end-of-turn token that is not trained
   (``train_on_eos: none``: the model never learns to stop) fails here.
2. **prompt** — the prompt `tools infer` builds for the row's dialogue (:class:`~dataset_builders.prompt.
   PromptBuilder`, the tokenizer's chat template with the generation prompt — the template Axolotl saves
   with the trained model) equals the training row's prefix, token for token. A system turn dropped, another
   system prompt, a newline added or another chat template fails here.
3. **length** — the row fits the recipe's ``sequence_len``, so Axolotl neither cuts nor drops it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from common.errors import UserError
from common.io import read_jsonl
from common.paths import MAKES_BASE_MODEL, require_local
from common.tokenizer import chat_prompt_ids
from dataset_builders.nikl import Example
from dataset_builders.prompt import PromptBuilder, parse_user_message
from training.cpu_overlay import load_recipe, overlay_config, write_config

CHECKS = {
    "trained": "1. trained tokens = the answer + end of turn",
    "prompt": "2. prompt = the one `tools infer` builds",
    "length": "3. fits sequence_len (nothing cut or dropped)",
}
TRAINED_MARK = ("⟦", "⟧")  # around the tokens that carry a loss, in the decoded row shown
IGNORED = -100  # the label of a token without loss


@dataclass
class RowResult:
    """One row's outcome: the problem per failed check (none: it passes), its length, and its text with the
    trained tokens marked."""

    index: int
    id: str
    tokens: int
    shown: str
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"row {self.index + 1} (id {self.id!r})" if self.id else f"row {self.index + 1}"


@dataclass
class DataCheck:
    """Every row's outcome, and what the rows were checked against."""

    kind: str  # "SFT" or "DPO"
    rows: list[RowResult]
    sequence_len: int
    settings: str  # the recipe settings that decide the checks, as one line

    def failing(self, check: str) -> list[RowResult]:
        return [row for row in self.rows if check in row.problems]

    @property
    def passed(self) -> bool:
        return not any(row.problems for row in self.rows)

    def example(self) -> RowResult:
        """The row to show: the first that fails a check, else the first."""
        return next((row for row in self.rows if row.problems), self.rows[0])

    def summary_lines(self) -> list[str]:
        lines = []
        for check, title in CHECKS.items():
            failing = self.failing(check)
            status = "FAIL" if failing else "PASS"
            detail = f"{len(self.rows) - len(failing)}/{len(self.rows)} rows"
            if check == "length":
                detail += f" (longest {max(row.tokens for row in self.rows)} tokens, sequence_len {self.sequence_len})"
            if failing:
                detail += f"; first: {failing[0].where}: {failing[0].problems[check]}"
            lines.append(f"{status} {title}: {detail}")
        return lines

    def error(self) -> str:
        """One line naming the first failing row and check, and how many rows fail each check."""
        first = self.example()
        check = next(iter(first.problems))
        counts = ", ".join(f"{len(self.failing(name))} of {len(self.rows)} rows fail check {CHECKS[name].split('.')[0]}"
                           for name in CHECKS if self.failing(name))
        return f"{first.where} fails check {CHECKS[check]}: {first.problems[check]} ({counts})"


class _AxolotlInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("axolotl") and record.levelno < logging.WARNING)


@contextlib.contextmanager
def quiet_axolotl() -> Iterator[None]:
    """Axolotl logs its whole config, its plugins and its chat template at INFO while loading them: inside the
    block only its warnings show. (Its loggers pass everything to the ``axolotl`` logger's own handlers.)"""
    handlers = logging.getLogger("axolotl").handlers + logging.getLogger().handlers
    drop = _AxolotlInfo()
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def axolotl_config(recipe: Path, rows: Path, tokenizer: str | None) -> Any:
    """The recipe as Axolotl's own loader reads it (validated and normalised), with ``rows`` as its data and
    ``tokenizer`` (a model directory or hub id; default: the recipe's ``base_model``) as its base model.
    GPU-only keys are switched off first (:data:`~training.cpu_overlay.CPU_OVERLAY`: none of them changes
    tokenisation), and the output goes to a temporary folder (Axolotl writes a debug log there). Axolotl is a
    library here, not a run of the user's: it sends no telemetry (``AXOLOTL_DO_NOT_TRACK``, unless set), leaves
    ``sys.stdout`` and ``sys.stderr`` alone (``AXOLOTL_TEE_STDOUT=0`` while loading: by default the loader replaces
    them, for the rest of the process, by copies to its debug log, axolotl/utils/tee.py), and the debug log it
    opens is closed before this returns."""
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    from axolotl.cli.config import load_cfg
    from axolotl.utils.tee import close_debug_log

    base = tokenizer or load_recipe(recipe).get("base_model")
    if not base:
        raise UserError(f"{recipe} names no base_model: pass --tokenizer")
    require_local(base, "--tokenizer" if tokenizer else f"the base_model of {recipe}",
                  MAKES_BASE_MODEL + ("" if tokenizer else "; or pass --tokenizer DIR"))
    with tempfile.TemporaryDirectory(prefix="check-data-") as scratch:
        cfg = overlay_config(recipe, base_model=base, train_data=rows, output_dir=scratch, max_steps=1)
        config_path = write_config(cfg, Path(scratch) / "config.yml", recipe=recipe)
        tee = os.environ.get("AXOLOTL_TEE_STDOUT")
        os.environ["AXOLOTL_TEE_STDOUT"] = "0"
        try:
            with quiet_axolotl():
                return load_cfg(str(config_path))
        except (ValueError, OSError) as error:
            raise UserError(f"Axolotl cannot load {recipe} with base model {base}: {error}") from None
        finally:
            close_debug_log()  # the log file only: with the tee installed, it would deadlock (tee.py's lock)
            if tee is None:
                os.environ.pop("AXOLOTL_TEE_STDOUT")
            else:
                os.environ["AXOLOTL_TEE_STDOUT"] = tee


def check_rows(recipe: Path | str, rows_path: Path | str, *, tokenizer: str | None = None,
               system_prompt: str | None = None) -> DataCheck:
    """Tokenise every row of ``rows_path`` as Axolotl will for ``recipe`` and run the three checks."""
    recipe, rows_path = Path(recipe), Path(rows_path)
    rows = read_jsonl(rows_path)
    if not rows:
        raise UserError(f"--input {rows_path}: no rows")
    cfg = axolotl_config(recipe, rows_path, tokenizer)
    from axolotl.loaders import load_tokenizer

    with quiet_axolotl():
        axolotl_tokenizer = load_tokenizer(cfg)
    inference = PromptBuilder(system_prompt=system_prompt, tokenizer=axolotl_tokenizer)
    entry = cfg.datasets[0]
    eot = (cfg.eot_tokens or [axolotl_tokenizer.eos_token])[0]
    if cfg.rl:
        from axolotl.prompt_strategies.dpo import load as load_dpo

        transform = load_dpo(entry.type, cfg, dataset_idx=0)
        if transform is None:
            raise UserError(f"{recipe}: Axolotl has no preference transform {entry.type!r}")
        transform = transform[0] if isinstance(transform, tuple) else transform  # (function, map options)
        results = [check_dpo_row(index, row, cfg, entry, transform, axolotl_tokenizer, inference, eot)
                   for index, row in enumerate(rows)]
        settings = f"rl {enum_value(cfg.rl)}, type {entry.type}, chat_template {enum_value(cfg.chat_template)}"
        kind = "DPO"
    else:
        from axolotl.prompt_strategies import load

        with quiet_axolotl():
            strategy = load(entry.type, axolotl_tokenizer, cfg, entry)
        if strategy is None:
            raise UserError(f"{recipe}: Axolotl has no dataset strategy {entry.type!r}")
        results = [check_sft_row(index, row, strategy, entry, axolotl_tokenizer, inference, eot, cfg.sequence_len)
                   for index, row in enumerate(rows)]
        settings = (f"type {entry.type}, chat_template {enum_value(cfg.chat_template)}, roles_to_train "
                    f"{list(entry.roles_to_train or [])}, train_on_eos {entry.train_on_eos}, "
                    f"train_on_inputs {bool(cfg.train_on_inputs)}")
        kind = "SFT"
    return DataCheck(kind, results, cfg.sequence_len, settings)


def enum_value(value: Any) -> Any:
    """Axolotl's config holds enums (``ChatTemplate.exaone``): their value, for the summary line."""
    return getattr(value, "value", value)


def inference_prompt(row: dict[str, Any], messages: Sequence[dict[str, Any]], inference: PromptBuilder
                     ) -> tuple[list[int] | None, str]:
    """The prompt ids `tools infer` builds for the dialogue of ``messages`` (the row's prompt turns), or
    ``None`` and why not: its user turn must be one :func:`~dataset_builders.prompt.user_message` builds."""
    user = next((message.get("content") for message in messages if message.get("role") == "user"), None)
    parsed = parse_user_message(user) if isinstance(user, str) else None
    if parsed is None:
        return None, ("its user turn is not the prompt `tools infer` builds ('[Conversation]\\n화자ID: …"
                      "\\n\\n[Question]\\n위 … 주제에 대한 대화를 요약해주세요.')")
    conversation, keywords = parsed
    example = Example(str(row.get("id", "")), tuple(conversation), tuple(keywords), "")
    return inference.build(example).token_ids, ""


def compare_prompts(training: Sequence[int], inference: Sequence[int], tokenizer: Any) -> str:
    """'' when ``training`` starts with ``inference``; else where and how they part."""
    if list(training[:len(inference)]) == list(inference):
        return ""
    at = next((i for i, (a, b) in enumerate(zip(training, inference)) if a != b), min(len(training), len(inference)))
    context = max(0, at - 3)

    def text(ids: Sequence[int]) -> str:
        return repr(tokenizer.decode(list(ids[context:at + 6]), skip_special_tokens=False))

    return (f"training and `tools infer` part at prompt token {at} of {len(inference)}: training has {text(training)}, "
            f"infer builds {text(inference)}")


def marked(tokenizer: Any, ids: Sequence[int], trained: Sequence[bool]) -> str:
    """``ids`` decoded, each run of trained tokens between :data:`TRAINED_MARK`."""
    pieces, start = [], 0
    for index in range(1, len(ids) + 1):
        if index == len(ids) or trained[index] != trained[start]:
            text = tokenizer.decode(list(ids[start:index]), skip_special_tokens=False)
            pieces.append(f"{TRAINED_MARK[0]}{text}{TRAINED_MARK[1]}" if trained[start] else text)
            start = index
    return "".join(pieces)


def check_sft_row(index: int, row: dict[str, Any], strategy: Any, entry: Any, tokenizer: Any,
                  inference: PromptBuilder, eot: str, sequence_len: int) -> RowResult:
    """Axolotl's ``input_ids``/``labels`` of one SFT row, against the three checks."""
    messages = row.get(entry.field_messages or "messages") or []
    tokenized = strategy.tokenize_prompt(row)
    ids, labels = list(tokenized["input_ids"]), list(tokenized["labels"])
    trained = [label != IGNORED for label in labels]
    result = RowResult(index, str(row.get("id", "")), len(ids), marked(tokenizer, ids, trained))
    has_answer = bool(messages) and messages[-1].get("role") == "assistant"
    prompt_turns = messages[:-1] if has_answer else messages

    prompt, why = inference_prompt(row, prompt_turns, inference)
    if prompt is None:
        result.problems["prompt"] = why
    elif problem := compare_prompts(ids, prompt, tokenizer):
        result.problems["prompt"] = problem

    if not has_answer:
        result.problems["trained"] = "the row has no assistant turn to train on"
    elif not any(trained):
        result.problems["trained"] = "no token is trained: Axolotl drops the row"
    else:
        # Where the answer starts: after the prompt turns and the assistant header, as the template renders them.
        start = len(chat_prompt_ids(tokenizer, prompt_turns))
        problem = trained_problem(tokenizer, ids, trained, start, messages[-1].get("content", ""), eot)
        if problem:
            result.problems["trained"] = problem
    if len(ids) > sequence_len:
        result.problems["length"] = f"{len(ids)} tokens > sequence_len {sequence_len}: Axolotl cuts or drops it"
    return result


def trained_problem(tokenizer: Any, ids: Sequence[int], trained: Sequence[bool], start: int, answer: str,
                    eot: str) -> str:
    """'' when the trained tokens are exactly ``answer`` + ``eot``, which begins at token ``start``; else the
    symptom: a loss on the prompt, an end-of-turn token without loss, or other trained tokens."""
    def text(positions: Sequence[int]) -> str:
        return tokenizer.decode([ids[position] for position in positions], skip_special_tokens=False)

    in_prompt = [position for position in range(min(start, len(ids))) if trained[position]]
    in_answer = [position for position in range(start, len(ids)) if trained[position]]
    problems = []
    if in_prompt:
        problems.append(f"loss on the prompt: {len(in_prompt)} tokens of the system/user turns are trained "
                        f"({text(in_prompt)[:60]!r}…; roles_to_train / train_on_inputs)")
    got = text(in_answer)
    contiguous = in_answer == list(range(start, start + len(in_answer)))
    if got == answer and contiguous:
        problems.append(f"the end-of-turn token {eot} is not trained: the model does not learn to stop (train_on_eos)")
    elif got != answer + eot or not contiguous:
        problems.append(f"the trained tokens of the answer are {got[:100]!r}, not the summary + {eot}")
    return "; ".join(problems)


def check_dpo_row(index: int, row: dict[str, Any], cfg: Any, entry: Any, transform: Any, tokenizer: Any,
                  inference: PromptBuilder, eot: str) -> RowResult:
    """Axolotl's preference ``transform`` of one DPO row (prompt, chosen and rejected text), tokenised as TRL's
    DPO trainer does (the prompt, then prompt + each completion), against the three checks."""
    import inspect

    from axolotl.utils.data.rl import _drop_long_sequences
    from trl.data_utils import _tokenize

    kwargs = {"tokenizer": tokenizer} if "tokenizer" in inspect.signature(transform).parameters else {}
    sample = transform(dict(row), **kwargs)
    for name in ("chosen", "rejected"):  # TRL appends the EOS to a text completion that lacks it
        if not sample[name].endswith(tokenizer.eos_token):
            sample[name] += tokenizer.eos_token
    prompt_ids = list(_tokenize(tokenizer, sample["prompt"])["input_ids"])
    completions = {name: list(_tokenize(tokenizer, sample["prompt"] + sample[name])["input_ids"])
                   for name in ("chosen", "rejected")}
    shown = tokenizer.decode(prompt_ids, skip_special_tokens=False) + "".join(
        f"\n{name + ':':9} {TRAINED_MARK[0]}{tokenizer.decode(ids[len(prompt_ids):], skip_special_tokens=False)}"
        f"{TRAINED_MARK[1]}" for name, ids in completions.items())
    result = RowResult(index, str(row.get("id", "")), max(len(ids) for ids in completions.values()), shown)

    messages = row.get(entry.field_messages or "messages") or []
    prompt, why = inference_prompt(row, messages, inference)
    if prompt is None:
        result.problems["prompt"] = why
    elif problem := compare_prompts(prompt_ids, prompt, tokenizer) or (
            "" if len(prompt_ids) == len(prompt) else f"the training prompt has {len(prompt_ids)} tokens, "
                                                      f"`tools infer`'s {len(prompt)}"):
        result.problems["prompt"] = problem

    problems = []
    fields = {"chosen": entry.field_chosen or "chosen", "rejected": entry.field_rejected or "rejected"}
    for name, ids in completions.items():
        if ids[:len(prompt_ids)] != prompt_ids:
            problems.append(f"{name}: the prompt tokenises differently in front of the completion")
        text = tokenizer.decode(ids[len(prompt_ids):], skip_special_tokens=False)
        if not text.endswith(eot):
            problems.append(f"{name} does not end with the end-of-turn token {eot}: the model does not learn to stop")
        elif text != completion_text(row[fields[name]]) + eot:
            problems.append(f"{name} is {text[:80]!r}, not its answer + {eot}")
    if problems:
        result.problems["trained"] = "; ".join(problems)
    if not _drop_long_sequences(sample, cfg.rl, tokenizer, cfg.sequence_len):
        result.problems["length"] = (f"prompt + completion > sequence_len {cfg.sequence_len}: Axolotl cuts or drops "
                                     "the pair")
    return result


def completion_text(value: Any) -> str:
    """The answer of a DPO completion field as Axolotl reads it: a string, a message, or a list (its last)."""
    message = value[-1] if isinstance(value, list) else value
    return message.get("content", "") if isinstance(message, dict) else str(message)
