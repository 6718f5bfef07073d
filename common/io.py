"""Writing and reading files safely: what every command that writes or reads data goes through.

* Outputs are written to a temporary file beside the target and renamed over it: a crash, a full disk or
  a validation error never leaves a partial file, and the temporary file is removed on every error
  (SIGTERM and Ctrl-C included, see ``tools/cli.py``); one left by ``kill -9`` (``.NAME.tmp-PID-…``) is
  removed by the next write of the same file (:mod:`common.files`). The written file gets the permissions a plain
  ``open()`` would give (the umask; an existing file keeps its mode), and an output path that is a
  symlink is written *through*: its target gets the new content.
* An output that is not a file in a folder — a device (``/dev/null``), a FIFO, a socket, or an open stream of
  this process (``/dev/stdout``, ``/dev/fd/N``, also when the shell redirected it to a file) — is written in
  place, never replaced: a rename would put a regular file where the device or the redirected file was.
  Commands that keep side files beside their output (``OUTPUT.lock``, ``OUTPUT.kept-out.txt``) refuse such
  outputs instead (:func:`stream_or_device`).
* :func:`refuse_overwriting_inputs` stops a command before any work when an output (or a side file it
  writes, such as ``OUTPUT.lock``) is one of its inputs; :func:`refuse_writing_into` when an output would
  land in a folder the command reads a model, tokenizer or adapter from; :func:`refuse_overlapping_folders` when an
  output folder is, contains or lies inside one.
* JSONL reading names the file and line of every problem, and recognises a JSON list given by mistake.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping

from common.errors import UserError
from common.files import cannot_write, clear_leftovers, leftover_name
from common.text import unencodable_problem

KEPT_OUT_SUFFIX = ".kept-out.txt"  # OUTPUT.kept-out.txt: ids of the examples a data builder kept out


_OPEN_FILE_LINK = re.compile(r"^/proc/(\d+)/fd/(\d+)$")


def _open_descriptor(path: Path | str) -> tuple[int, int] | None:
    """(pid, fd) when ``path`` reaches its file through ``/proc/PID/fd/N`` (``/dev/stdout``, ``/dev/fd/N``): an
    open file of a process rather than a name in a folder. Followed link by link, as the kernel does."""
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links in a row
        current = os.path.join(os.path.realpath(os.path.dirname(current)), os.path.basename(current))
        if match := _OPEN_FILE_LINK.match(current):
            return int(match.group(1)), int(match.group(2))
        if not os.path.islink(current):
            return None
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return None


def stream_or_device(path: Path | str) -> str | None:
    """What ``path`` is when it is not a file in a folder — ``"a character device"``, ``"a FIFO"``, ``"a socket"``,
    ``"a block device"`` or ``"an open stream"`` (``/dev/stdout``, ``/dev/fd/N``) — else ``None`` (a regular file, or
    nothing yet)."""
    if _open_descriptor(path) is not None:
        return "an open stream"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), None)


def _in_place(path: Path | str) -> IO[str] | None:
    """The handle to write ``path`` through when it must not be replaced (see :func:`stream_or_device`), else
    ``None``. This process's own open file is written through a copy of its descriptor, at its position (a
    redirected ``/dev/stdout`` keeps what was printed before; re-opening it would start at byte 0)."""
    descriptor = _open_descriptor(path)
    if descriptor is not None and descriptor[0] == os.getpid():
        fd = descriptor[1]
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None and stream.fileno() == fd:
                    stream.flush()
            except (AttributeError, OSError, ValueError):  # a stream with no descriptor (a test runner's)
                pass
        return os.fdopen(os.dup(fd), "w", encoding="utf-8")
    if descriptor is not None or stream_or_device(path):
        return open(path, "w", encoding="utf-8")
    return None


# Every file an atomic write put in place, in order: a command that is interrupted after its output was written
# is complete (tools/cli.py reads it).
WRITTEN: list[str] = []


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (they are delivered at its end)."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def atomic_open(path: Path | str) -> Iterator[IO[str]]:
    """Open a temporary file for writing text; on success it replaces ``path``, on error it vanishes.
    An :class:`OSError` (no permission, no space left, a directory in the way) becomes a :class:`UserError`
    naming ``path``. A device, FIFO or open stream is written in place instead (the module's docstring)."""
    try:
        stream = _in_place(path)
    except OSError as error:
        raise cannot_write(path, error) from None
    if stream is not None:
        try:
            with stream:
                yield stream
        except OSError as error:
            raise cannot_write(path, error) from None
        WRITTEN.append(os.path.realpath(path))
        return
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
        with _signals_held():  # renamed and recorded as one step
            os.replace(tmp, target)
            WRITTEN.append(str(target))
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
        try:
            Path(path).unlink(missing_ok=True)
        except OSError as error:  # a read-only disk says so even when there is nothing to remove
            raise cannot_write(path, error) from None
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


def refuse_overlapping_folders(outputs: Mapping[str, Path | str | None], folders: Mapping[str, Path | str | None]
                               ) -> None:
    """Raise a :class:`UserError` when an output folder (``{"--output-dir": dir}``) is, contains or is inside one of
    ``folders`` (``{"--base-model": dir}``: a model the command, or the training it prepares, reads): what is
    written there would replace the model's files (its ``config.json``, its tokenizer) or be taken for part of
    it. Values that are not local directories (hub ids, ``None``) are skipped."""
    for out_option, output in outputs.items():
        if output is None:
            continue
        written = os.path.realpath(output)
        for option, folder in folders.items():
            if folder is None or not os.path.isdir(folder):
                continue
            read = os.path.realpath(folder)
            how = ("is" if written == read else "contains" if read.startswith(written.rstrip(os.sep) + os.sep)
                   else "is inside" if written.startswith(read.rstrip(os.sep) + os.sep) else None)
            if how:
                raise UserError(f"{out_option} {output} {how} {option} {folder}: refusing to write where a model is "
                                "read from; choose another folder")


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


def tail(path: Path, lines: int = 15) -> list[str]:
    """The last ``lines`` lines of a log, progress-bar redraws (carriage returns) reduced to their end."""
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return [line.rsplit("\r", 1)[-1] for line in text.splitlines() if line.strip()][-lines:]
