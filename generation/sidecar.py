"""``<output>.partial.jsonl``: finished results of a run, so a killed run resumes where it stopped; and
``<output>.lock``, so two runs never write the same output at once. Both are named after the file the output
really is: an output that is a symlink has them beside its target, so a link and its target are one output."""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from common.errors import UserError
from common.files import cannot_write
from common.io import write_jsonl
from common.text import unencodable_problem

SIDECAR_SUFFIX = ".partial.jsonl"
LOCK_SUFFIX = ".lock"


def output_file(output: Path | str) -> Path:
    """``output`` with a symlink at its end followed: the file a write of ``output`` replaces, which names its side
    files (as typed otherwise, so messages show the path the user gave)."""
    return Path(os.path.realpath(output)) if os.path.islink(output) else Path(output)


def side_files(output: Path | str) -> dict[str, Path]:
    """The files a run on ``output`` writes beside it, by what they are (for refusing one that is an input)."""
    output = output_file(output)
    return {"its results sidecar": output.with_name(output.name + SIDECAR_SUFFIX),
            "its lock file": output.with_name(output.name + LOCK_SUFFIX)}


# Checks one finished row (a dict with an "id" string); returns what is wrong with it, or None.
RowCheck = Callable[[dict], "str | None"]


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two JSON values (``weights.model.config.json``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted({*old, *new}):
            out += changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "header"]


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The top-level settings that differ; for the weights, which files changed. A setting only one side
    records (a sidecar written by another version of this tool) is named as such."""
    parts = []
    for key in sorted({*old, *new}):
        if old.get(key) == new.get(key):
            continue
        if key not in old:
            parts.append(f"{key} (the run that wrote it did not record it: another version?)")
        elif key not in new:
            parts.append(f"{key} (recorded by the run that wrote it, not by this version)")
        elif key == "weights":
            files = changed_keys(old.get(key), new.get(key))
            parts.append("weights changed: " + ", ".join(files[:3]) + (" …" if len(files) > 3 else ""))
        else:
            parts.append(key)
    return ", ".join(parts)


class Sidecar:
    """A header line with the run's settings (and what the weights are), then one line per finished example
    (``{"id", "output"}`` or ``{"id", "candidates"}``), flushed and fsynced per batch.

    On reopen: a line cut short by a kill is dropped; a line that is not a valid result row (not UTF-8, not
    JSON, the wrong shape or type for this run) is reported by line number and regenerated, and the good
    rows are kept; a header that differs from this run's — other settings, or a checkpoint whose files
    changed — is refused, naming what changed, so results of two runs never mix.
    """

    def __init__(self, output: Path | str, header: dict[str, Any], check_row: RowCheck = lambda row: None):
        self.path = side_files(output)["its results sidecar"]
        self.header = json.loads(json.dumps(header))  # normalised as it will read back
        self.check_row = check_row
        self.problems: list[str] = []  # bad lines found on open, each already explained

    def open(self, *, restart: bool = False) -> dict[str, dict[str, Any]]:
        """Start or resume; returns the finished rows by id (``problems`` says what was not kept). A sidecar
        holding no results (a run that stopped before its first batch) is replaced, whatever its settings."""
        if self.path.is_dir():
            raise UserError(f"{self.path} is a directory, where this run keeps its results sidecar; move it away")
        if restart:
            self.path.unlink(missing_ok=True)
        header, rows = self._read() if self.path.exists() else (None, {})
        if header is None or (header != self.header and not rows and not self.problems):  # nothing to resume
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._write_lines([{"header": self.header}], mode="w")
            except (OSError, UserError):  # a full disk: no half header left behind
                self.path.unlink(missing_ok=True)
                raise
            return {}
        if header != self.header:
            raise UserError(f"{self.path} holds results of a run with different settings ({describe_change(header, self.header)}); "
                            "delete it or pass --restart to start over")
        if self.problems:  # rewrite without the bad lines, so they are reported once
            write_jsonl(self.path, [{"header": self.header}, *rows.values()])
        return rows

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self._write_lines(rows, mode="a")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def holds_results(self) -> bool:
        """Whether the file holds a result line (a complete line after the header). Read from the file, not
        taken from what the run remembers: a Ctrl-C can land after a batch was appended and before the run
        noted it."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return False
        return any(line.strip() for line in data[:data.rfind(b"\n") + 1].splitlines()[1:])

    def remove_unless_it_holds_results(self) -> None:
        """Remove the sidecar of a run that stopped before any result reached it (nothing to resume from)."""
        if not self.holds_results():
            self.remove()

    def _write_lines(self, rows: Sequence[dict[str, Any]], mode: str) -> None:
        try:
            with open(self.path, mode, encoding="utf-8") as file:
                file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            raise cannot_write(self.path, error) from None

    def _not_a_sidecar(self) -> UserError:
        return UserError(f"{self.path} is not a results sidecar of `tools infer` (no header line); "
                         "delete it or pass --restart")

    def _read(self) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        lines = complete.splitlines()
        if not lines:  # killed before the header was complete: nothing to resume …
            if data.strip() and not data.lstrip().startswith(b'{"header"'):  # … unless it is not a sidecar at all
                raise self._not_a_sidecar()
            return None, {}
        try:
            header = json.loads(lines[0].decode("utf-8"))["header"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            header = None
        if not isinstance(header, dict):  # not ours: checked before anything in it is touched
            raise self._not_a_sidecar()
        if len(complete) != len(data):  # killed mid-line: drop the torn tail before appending again
            with open(self.path, "r+b") as file:
                file.truncate(len(complete))
        rows: dict[str, dict[str, Any]] = {}
        first_line: dict[str, int] = {}
        for number, raw in enumerate(lines[1:], 2):
            if not raw.strip():
                continue
            problem = None
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problem = "not UTF-8 text"
            except json.JSONDecodeError as error:
                problem = f"not JSON ({error.msg})"
            else:
                problem = ("not a result row (no 'id' string)" if not isinstance(row, dict)
                           or not isinstance(row.get("id"), str) or not row["id"]
                           else unencodable_problem(row) or self.check_row(row))
            if problem is None and row["id"] in first_line:  # which copy is right cannot be told: keep neither
                problem = (f"a second result for id {row['id']!r} (line {first_line[row['id']]} has one too); "
                           "neither copy is kept")
                rows.pop(row["id"], None)
            if problem:
                self.problems.append(f"{self.path}: line {number}: {problem}; that example is generated again")
            else:
                rows[row["id"]] = row
                first_line[row["id"]] = number
        return header, rows


@contextmanager
def output_lock(output: Path | str) -> Iterator[None]:
    """Hold ``<output>.lock`` (an OS file lock, released even if the process is killed) for the run; a second
    run on the same output — also through a symlink to it, also in the same process — stops at once with a
    :class:`UserError`."""
    path = side_files(output)["its lock file"]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise cannot_write(path, error) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise UserError(f"{output} is being written by another run (it holds {path}); wait for it to finish "
                        "or stop it, then re-run to resume") from None
    try:
        try:
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()}\n".encode())  # who holds it, for a person looking
        except OSError as error:
            raise cannot_write(path, error) from None
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(handle)
