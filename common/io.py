"""Writing and reading files safely: what every command that writes or reads data goes through.

* Outputs are written to a temporary file beside the target and renamed over it: a crash, a full disk or
  a validation error never leaves a partial file, and the temporary file is removed on every error
  (SIGTERM and Ctrl-C included, see ``tools/cli.py``); one left by ``kill -9`` (``.NAME.tmp-PID-…``) is
  removed by the next write of the same file (:mod:`common.files`). The written file gets the permissions a plain
  ``open()`` would give (the umask; an existing file keeps its mode), and an output path that is a
  symlink is written *through*: its target gets the new content.
* :func:`refuse_overwriting_inputs` stops a command before any work when an output (or a side file it
  writes, such as ``OUTPUT.lock``) is one of its inputs; :func:`refuse_writing_into` when an output would
  land in a folder the command reads a model, tokenizer or adapter from.
* JSONL reading names the file and line of every problem, and recognises a JSON list given by mistake.
"""

from __future__ import annotations

import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

from common.errors import UserError
from common.files import cannot_write, clear_leftovers, leftover_name
from common.text import unencodable_problem

KEPT_OUT_SUFFIX = ".kept-out.txt"  # OUTPUT.kept-out.txt: ids of the examples a data builder kept out


@contextmanager
def atomic_open(path: Path | str) -> Iterator[IO[str]]:
    """Open a temporary file for writing text; on success it replaces ``path``, on error it vanishes.
    An :class:`OSError` (no permission, no space left, a directory in the way) becomes a :class:`UserError`
    naming ``path``."""
    target = Path(os.path.realpath(path))  # through a symlinked output: write its target
    if target.is_dir():
        raise UserError(f"cannot write {path}: it is a directory; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else None
        clear_leftovers(target, ("tmp",))
        tmp = leftover_name(target, "tmp", unique=True)
        handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    except OSError as error:
        raise cannot_write(path, error) from None
    try:
        if mode is not None:
            os.chmod(tmp, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, error) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with atomic_open(path) as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json(path: Path | str, data: Any, *, indent: int = 4, sort_keys: bool = False) -> None:
    """Write JSON as UTF-8 text, atomically. The defaults are the leaderboard files' look (indent 4, keys in their
    order); checkpoint files are written as ``save_pretrained`` writes them (``indent=2, sort_keys=True``)."""
    write_text(path, json.dumps(data, ensure_ascii=False, indent=indent, sort_keys=sort_keys) + "\n")


def write_text(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path) as file:
        file.write(text)


def write_id_list(path: Path | str, ids: Iterable[str]) -> bool:
    """The ids, one per line, atomically — or, with none, no file (a list left by an earlier run would name
    rows the new output has). Returns whether a file was written."""
    ids = list(ids)
    if not ids:
        Path(path).unlink(missing_ok=True)
        return False
    with atomic_open(path) as file:
        file.write("".join(f"{example_id}\n" for example_id in ids))
    return True


def same_file(a: Path | str, b: Path | str) -> bool:
    """True when ``a`` and ``b`` are one file: after symlinks and relative parts, or as hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def refuse_overwriting_inputs(outputs: Mapping[str, Path | str | None], inputs: Mapping[str, Any]) -> None:
    """Raise a :class:`UserError` when an output (``{"--output": path}``) is the same file as an input
    (``{"--input": path}``, or a list of paths for a repeatable option). Called before any work, so the
    input is never touched."""
    for out_option, output in outputs.items():
        if output is None:
            continue
        for in_option, value in inputs.items():
            for path in value if isinstance(value, (list, tuple)) else [value]:
                if path is not None and same_file(output, path):
                    raise UserError(f"{out_option} {output} is the same file as {in_option} {path}: refusing to "
                                    "overwrite an input; choose another output path")


def refuse_writing_into(outputs: Mapping[str, Path | str | None], folders: Mapping[str, Path | str | None]) -> None:
    """Raise a :class:`UserError` when an output (``{"--output": path}``) would be written into one of
    ``folders`` (``{"--ckpt": dir}``): a model, tokenizer or adapter folder the command reads. Writing there
    would change what the folder holds (a ``config.json`` replaced, a checkpoint's fingerprint changed).
    Values that are not local directories (hub ids, ``None``) are skipped."""
    for out_option, output in outputs.items():
        if output is None:
            continue
        parent = os.path.dirname(os.path.realpath(output))
        for option, folder in folders.items():
            if folder is not None and os.path.isdir(folder) and os.path.realpath(folder) == parent:
                raise UserError(f"{out_option} {output} is inside {option} {folder}: refusing to write into a folder "
                                "a model or tokenizer is read from; choose another output path")


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read a JSONL file; a bad line raises :class:`UserError` naming the file and line number (a JSON list,
    a file that is not UTF-8, or a string no file can hold — a lone surrogate — is named as such)."""
    rows = []
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    for number, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"{path}: line {number}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        if not line.strip():
            continue
        if number == 1 and line.lstrip().startswith("["):
            raise UserError(f"{path}: a JSON list, not JSONL (one JSON object per line); is it a submission or "
                            "NIKL task file given where JSONL is expected?")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: line {number}: not valid JSON ({error.msg}, column {error.colno})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {number}: must be a JSON object")
        if problem := unencodable_problem(row):
            example_id = row.get("id")
            named = f" (id {example_id!r})" if isinstance(example_id, str) and example_id else ""
            raise UserError(f"{path}: line {number}{named}: {problem}")
        rows.append(row)
    return rows
