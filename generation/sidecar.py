"""``<output>.partial.jsonl``: finished results of a run, so a killed run resumes where it stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from common.errors import UserError

SIDECAR_SUFFIX = ".partial.jsonl"


class Sidecar:
    """A header line with the run's settings, then one line per finished example (``{"id", "output"}`` or
    ``{"id", "candidates"}``), flushed and fsynced per batch.

    A line cut short by a kill is dropped on reopen; a header that differs from this run's settings
    is refused, so results from different checkpoints or decoding settings never mix.
    """

    def __init__(self, output: Path | str, header: dict[str, Any]):
        output = Path(output)
        self.path = output.with_name(output.name + SIDECAR_SUFFIX)
        self.header = json.loads(json.dumps(header))  # normalised as it will read back

    def open(self, *, restart: bool = False) -> dict[str, dict[str, Any]]:
        """Start or resume; returns the finished rows by id."""
        if restart:
            self.path.unlink(missing_ok=True)
        header, rows = self._read() if self.path.exists() else (None, [])
        if header is None:  # a new run (or one killed before its header was written)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_lines([{"header": self.header}], mode="w")
            return {}
        if header != self.header:
            changed = sorted(key for key in {*header, *self.header} if header.get(key) != self.header.get(key))
            raise UserError(
                f"{self.path} holds results of a run with different settings ({', '.join(changed)}); "
                f"delete it or pass --restart to start over"
            )
        return {row["id"]: row for row in rows}

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self._write_lines(rows, mode="a")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write_lines(self, rows: Sequence[dict[str, Any]], mode: str) -> None:
        with open(self.path, mode, encoding="utf-8") as file:
            file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
            file.flush()
            os.fsync(file.fileno())

    def _read(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # killed mid-line: drop the torn tail before appending again
            with open(self.path, "r+b") as file:
                file.truncate(len(complete))
        lines = complete.decode("utf-8", errors="replace").splitlines()
        if not lines:  # killed before the header was complete: nothing to resume
            return None, []
        try:
            header = json.loads(lines[0])["header"]
            rows = [json.loads(line) for line in lines[1:] if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError):
            header = rows = None
        if not isinstance(header, dict) or not all(isinstance(row, dict) and "id" in row for row in rows or ()):
            raise UserError(f"{self.path} is not a results sidecar of `tools infer`; delete it or pass --restart")
        return header, rows
