"""Reading and validating NIKL "일상 대화 요약" task files.

A task file is a JSON list of examples::

    {"id": "train-000001",
     "input": {"conversation": [{"speaker": "SD2000001", "utterance": "..."}, ...],
               "subject_keyword": ["...", ...]},
     "output": "..."}

Test files carry ``"output": ""``. Every problem is reported as a :class:`NiklDataError` whose
message names the file, the example (id, or index when the id itself is broken) and the field, on
one line, so a command can print it and exit non-zero.

:func:`sample_files`: the sample files this package ships in ``dataset_builders/samples/`` — dialogues written for
this project in the task's schema (not corpus data), on which the demo, the tiny model's tokenizer, the
documentation's CPU blocks and the tests run.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.text import same_id_in_two_forms, unencodable_problem


SAMPLES = Path(__file__).with_name("samples")
SPLITS = ("train", "dev", "test")


def sample_files(splits: tuple[str, ...] = SPLITS) -> list[Path]:
    """The bundled sample file of each split (``일상대화요약_{split}.json``), in the order asked."""
    return [SAMPLES / f"일상대화요약_{split}.json" for split in splits]


class NiklDataError(UserError):
    """Bad input data; the message is one line naming file, example and field."""


@dataclass(frozen=True)
class Utterance:
    speaker: str
    utterance: str


@dataclass(frozen=True)
class Example:
    id: str
    conversation: tuple[Utterance, ...]
    subject_keyword: tuple[str, ...]
    output: str
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


def _where(path: Path | str, index: int, example_id: Any) -> str:
    if isinstance(example_id, str) and example_id:
        return f"{path}: example {example_id!r} (index {index})"
    return f"{path}: example at index {index}"


def _check_str(value: Any, where: str, name: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise NiklDataError(f"{where}: field '{name}' must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise NiklDataError(f"{where}: field '{name}' is empty")
    return value


TRAINING_NEEDS_OUTPUT = "a training split needs reference summaries"


# What may not appear in a speaker id or a keyword: each is written into one line of the prompt, so a line
# break or a section marker would change the prompt's structure (a forged "[Question]" line, a new turn).
_MARKERS = ("[Conversation]", "[Question]", "[|")


def _check_prompt_safe(value: str, where: str, name: str) -> str:
    if any(char in value for char in "\n\r\x0b\x0c\x85\u2028\u2029") or any(ord(char) < 32 for char in value):
        raise NiklDataError(f"{where}: field '{name}' contains a line break or control character: {value!r}")
    marker = next((marker for marker in _MARKERS if marker in value), None)
    if marker:
        raise NiklDataError(f"{where}: field '{name}' contains the prompt marker {marker!r}: {value!r}")
    return value


def parse_example(raw: Any, index: int, path: Path | str = "<data>", *, require_output: bool | str = False) -> Example:
    """Validate one raw example and return it as an :class:`Example`."""
    if not isinstance(raw, dict):
        raise NiklDataError(f"{_where(path, index, None)}: must be an object, got {type(raw).__name__}")
    example_id = raw.get("id")
    where = _where(path, index, example_id)
    if problem := unencodable_problem(raw):  # every field is written out again (submission, training rows)
        raise NiklDataError(f"{where}: {problem}")
    if "id" not in raw:
        raise NiklDataError(f"{where}: missing field 'id'")
    _check_str(example_id, where, "id", allow_empty=False)

    inp = raw.get("input")
    if inp is None:
        raise NiklDataError(f"{where}: missing field 'input'")
    if not isinstance(inp, dict):
        raise NiklDataError(f"{where}: field 'input' must be an object, got {type(inp).__name__}")

    conversation = inp.get("conversation")
    if conversation is None:
        raise NiklDataError(f"{where}: missing field 'input.conversation'")
    if not isinstance(conversation, list):
        raise NiklDataError(
            f"{where}: field 'input.conversation' must be a list, got {type(conversation).__name__}"
        )
    if not conversation:
        raise NiklDataError(f"{where}: field 'input.conversation' is empty")
    turns = []
    for turn_index, turn in enumerate(conversation):
        name = f"input.conversation[{turn_index}]"
        if not isinstance(turn, dict):
            raise NiklDataError(f"{where}: field '{name}' must be an object, got {type(turn).__name__}")
        for key in ("speaker", "utterance"):
            if key not in turn:
                raise NiklDataError(f"{where}: missing field '{name}.{key}'")
        speaker = _check_prompt_safe(_check_str(turn["speaker"], where, f"{name}.speaker", allow_empty=False),
                                     where, f"{name}.speaker")
        utterance = _check_str(turn["utterance"], where, f"{name}.utterance")  # empty utterances are real
        turns.append(Utterance(speaker, utterance))

    keywords = inp.get("subject_keyword")
    if keywords is None:
        raise NiklDataError(f"{where}: missing field 'input.subject_keyword'")
    if not isinstance(keywords, list):
        raise NiklDataError(
            f"{where}: field 'input.subject_keyword' must be a list, got {type(keywords).__name__}"
        )
    if not keywords:
        raise NiklDataError(f"{where}: field 'input.subject_keyword' is empty")
    for keyword_index, keyword in enumerate(keywords):
        name = f"input.subject_keyword[{keyword_index}]"
        _check_prompt_safe(_check_str(keyword, where, name, allow_empty=False), where, name)

    if "output" not in raw:
        raise NiklDataError(f"{where}: missing field 'output'")
    output = _check_str(raw["output"], where, "output")
    if require_output and not output.strip():
        why = require_output if isinstance(require_output, str) else TRAINING_NEEDS_OUTPUT
        raise NiklDataError(f"{where}: field 'output' is empty ({why})")

    return Example(example_id, tuple(turns), tuple(keywords), output, raw)


def _first_line_is_an_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text.lstrip().split("\n", 1)[0]), dict)
    except json.JSONDecodeError:
        return False


def load_nikl(path: Path | str, *, require_output: bool | str = False) -> list[Example]:
    """Load and validate a whole task file.

    ``require_output`` is for files that must carry reference summaries (training splits, references to
    score against): an empty ``output`` is then an error; a string says why in the message.
    Raises :class:`NiklDataError` on the first problem found.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NiklDataError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise NiklDataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data" and _first_line_is_an_object(text):
            raise NiklDataError(f"{path}: JSONL (one JSON object per line), not a NIKL task file (one JSON list of "
                                "examples); candidates from `tools infer --num-candidates` go to --candidates") from None
        raise NiklDataError(f"{path}: not valid JSON ({error.msg}: line {error.lineno}, column {error.colno})") from None
    if not isinstance(data, list):
        raise NiklDataError(f"{path}: top level must be a JSON list of examples, got {type(data).__name__}")
    if not data:
        raise NiklDataError(f"{path}: contains no examples")
    examples = []
    seen: dict[str, tuple[int, str]] = {}  # by the id's composed form (NFC): index and the id as written
    for index, raw in enumerate(data):
        example = parse_example(raw, index, path, require_output=require_output)
        key = unicodedata.normalize("NFC", example.id)
        if key in seen:
            first, written = seen[key]
            why = "duplicate id" if written == example.id else same_id_in_two_forms(example.id, written)
            raise NiklDataError(f"{_where(path, index, example.id)}: {why} (first seen at index {first})")
        seen[key] = (index, example.id)
        examples.append(example)
    return examples
