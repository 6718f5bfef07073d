"""Text that JSON can hold but no file can (lone surrogates), and ids that look the same but are not.

JSON's ``\\ud800`` escape decodes to a lone UTF-16 surrogate, a Python string that UTF-8 cannot encode, so the
first write (a sidecar, a submission, a tokenizer call) fails far from the file it came from. Loaders check
what they read with :func:`unencodable_field` and name the file, the example and the field at once.

Hangul can be written composed (NFC: one code point a syllable, as the NIKL files are) or decomposed (NFD: the
jamo, as some macOS tools write it); both look the same on screen. Ids are matched as written — a submission
must carry the task file's ids byte for byte — so where an id is missing, or seen twice, only because of its
form, the error says so (:func:`normalisation_twins`) instead of listing two ids that look identical.
"""

from __future__ import annotations

from typing import Any, Iterable


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


def normalisation_form(text: str) -> str:
    """``"NFC"`` or ``"NFD"`` — the Unicode normalisation form ``text`` is in (composed Hangul syllables, or the
    jamo they decompose into) — or ``"mixed"``."""
    import unicodedata

    return ("NFC" if unicodedata.is_normalized("NFC", text) else "NFD" if unicodedata.is_normalized("NFD", text)
            else "mixed")


def normalisation_twins(ids: Iterable[str], others: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs ``(id, other)``, one from each side, that are different strings but the same text once normalised
    (NFC): the same id, written in two Unicode forms — which look identical on screen."""
    import unicodedata

    by_form: dict[str, str] = {}
    for other in others:
        by_form.setdefault(unicodedata.normalize("NFC", other), other)
    return [(text, twin) for text in ids
            if (twin := by_form.get(unicodedata.normalize("NFC", text))) is not None and twin != text]


def same_id_in_two_forms(first: str, second: str) -> str:
    """One phrase saying that two ids differ only in their Unicode normalisation."""
    return (f"{first!r} ({normalisation_form(first)}) and {second!r} ({normalisation_form(second)}) are the same id "
            "in two Unicode normalisation forms; write every file in one form (the NIKL files use NFC)")
