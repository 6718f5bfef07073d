"""Atomic file writing and JSONL reading shared by every command.

Outputs are written to a temporary file beside the target and renamed over it, so a crash or a
validation error never leaves a partial file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from common.errors import UserError


@contextmanager
def atomic_open(path: Path | str) -> Iterator[IO[str]]:
    """Open a temporary file for writing text; on success it replaces ``path``, on error it vanishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with atomic_open(path) as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(path: Path | str, data: Any) -> None:
    """Write JSON the way the leaderboard files look: UTF-8 text, indent 4."""
    with atomic_open(path) as file:
        json.dump(data, file, ensure_ascii=False, indent=4)
        file.write("\n")


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read a JSONL file; a bad line raises :class:`UserError` naming the file and line number."""
    rows = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}: line {number}: must be a JSON object")
            rows.append(row)
    return rows
