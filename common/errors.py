"""The one exception type for problems a user can fix.

Library code raises :class:`UserError` (or a subclass) with a one-line message that names the file,
option or value at fault and, where there is one, the fix. The ``tools`` click group turns it into
``Error: <message>`` and exit code 1 in exactly one place; every other exception keeps its traceback,
because it is a bug (ours or a dependency's), not a mistake of the user.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a bad checkpoint, missing metric weights, a bad recipe, a failed stage: fixable by the user."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(message: str) -> str:
    """The first non-empty line of ``message`` (library errors can be many lines long), stripped."""
    for line in str(message).splitlines():
        if line.strip():
            return line.strip()
    return str(message).strip()
