"""Text that JSON can hold but no file can: lone surrogates.

JSON's ``\\ud800`` escape decodes to a lone UTF-16 surrogate, a Python string that UTF-8 cannot encode, so the
first write (a sidecar, a submission, a tokenizer call) fails far from the file it came from. Loaders check
what they read with :func:`unencodable_field` and name the file, the example and the field at once.
"""

from __future__ import annotations

from typing import Any


def is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unencodable_field(value: Any, path: str = "") -> str | None:
    """The dotted path (``input.conversation[3].utterance``; ``""`` for ``value`` itself) of the first string
    in a JSON value — a key or a value — that UTF-8 cannot encode; ``None`` when there is none."""
    if isinstance(value, str):
        return None if is_encodable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not is_encodable(str(key)):
                return where
            if (found := unencodable_field(item, where)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := unencodable_field(item, f"{path}[{index}]")) is not None:
                return found
    return None


def unencodable_problem(value: Any) -> str | None:
    """One phrase for what :func:`unencodable_field` finds (``None`` when all is text)."""
    field = unencodable_field(value)
    if field is None:
        return None
    return (f"field '{field}' holds a lone surrogate (a \\ud800-style escape JSON allows but UTF-8 cannot encode); "
            "replace it with the character meant")
