"""What a command leaves on disk when it cannot finish, and the one line for a write that failed.

A command that writes through a temporary sibling (a file renamed over its target, a checkpoint folder
renamed into place) names it ``.TARGET.KIND-PID[-RANDOM]``: hidden, beside the target, with the writing
process's id. Ctrl-C, SIGTERM and errors remove it on the way out; ``kill -9`` (or a power cut) gives no
chance to, so the next run on the same target calls :func:`clear_leftovers`, which removes those whose
process is gone — never one of a run still going, never a file of any other name.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from pathlib import Path

from common.errors import UserError

# What to do about a write that failed, by errno (the rest: the system's own words only).
_WRITE_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere",
    errno.EFBIG: "a file size limit (ulimit -f) stops it; raise the limit or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "no permission to write there; write elsewhere or change the folder's permissions",
    errno.EPERM: "the system does not allow writing there (immutable or protected); write elsewhere",
}
WRITE_ERRORS = frozenset(_WRITE_ADVICE)


def cannot_write(path: Path | str, error: OSError) -> UserError:
    """One line for a failed write of ``path``: what happened and, for the usual causes, what to do."""
    advice = _WRITE_ADVICE.get(error.errno)
    return UserError(f"cannot write {path}: {error.strerror or error}" + (f" ({advice})" if advice else ""))


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process's umask: the permissions a plain ``open()`` (0o666) or ``mkdir`` (0o777)
    gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def leftover_name(target: Path, kind: str, *, unique: bool = False) -> Path:
    """The hidden sibling of ``target`` this process writes through: ``.NAME.KIND-PID`` (``-RANDOM`` added
    when one process may need several at once)."""
    suffix = f"-{secrets.token_hex(4)}" if unique else ""
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}{suffix}")


def _pattern(target: Path, kinds: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.({'|'.join(map(re.escape, kinds))})-(\d+)(-[0-9a-f]+)?$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one that belongs to another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_leftovers(target: Path, kinds: tuple[str, ...]) -> list[Path]:
    """The siblings of ``target`` named ``.NAME.KIND-PID…`` whose process is gone, oldest first."""
    pattern = _pattern(target, kinds)
    try:
        names = os.listdir(target.parent)
    except OSError:  # no folder yet: nothing left over
        return []
    found = [target.with_name(name) for name in names
             if (match := pattern.match(name)) and int(match.group(2)) != os.getpid() and not pid_alive(int(match.group(2)))]
    return sorted(found, key=lambda path: path.lstat().st_mtime)


def remove(path: Path) -> None:
    """Delete a file, a symlink (not what it points to) or a folder tree; already gone is fine."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def clear_leftovers(target: Path, kinds: tuple[str, ...]) -> list[Path]:
    """Remove what killed runs on ``target`` left (see the module's docstring); returns what was removed.
    A leftover that cannot be removed (no permission) is left as it is: the run itself decides whether it
    can write there."""
    removed = []
    for path in dead_leftovers(target, kinds):
        try:
            remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed



PID_DIGITS = 7  # Linux's largest process id (kernel.pid_max) is 4,194,304


def name_max(folder: Path | str) -> int:
    """The longest file name, in bytes, allowed in ``folder`` (or the nearest folder above it that exists)."""
    folder = Path(os.path.abspath(folder))
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def name_too_long(target: Path | str, *, side_suffixes: tuple[str, ...] = (),
                  kinds: tuple[tuple[str, bool], ...] = (("tmp", True),)) -> str | None:
    """What is wrong when a name a command will write for ``target`` is longer than its file system allows (255
    bytes on most): ``target`` itself, its side files (``TARGET<suffix>``) or a hidden sibling one of them is
    written through (``.NAME.KIND-PID[-RANDOM]``, :func:`leftover_name`; ``kinds``: (kind, unique)); ``None``
    when all fit. Checked when the option is parsed, so a long name does not fail a run at its very end."""
    target = Path(target)
    limit = name_max(target.parent)
    names = []  # (what it is, the longest it can be)
    for suffix in ("", *side_suffixes):
        names.append((f"NAME{suffix}", target.name + suffix))
        names += [(f".NAME{suffix}.{kind}-PID" + ("-RANDOM" if unique else ""),
                   f".{target.name}{suffix}.{kind}-{'9' * PID_DIGITS}" + ("-ffffffff" if unique else ""))
                  for kind, unique in kinds]
    pattern, longest = max(names, key=lambda item: len(os.fsencode(item[1])))
    size = len(os.fsencode(longest))
    if size <= limit:
        return None
    what = "the name is" if pattern == "NAME" else f"writing it takes a file {pattern} beside it,"
    return (f"{target}: name too long: {what} {size} bytes here, and this file system allows {limit}; shorten the "
            f"name by {size - limit} bytes")
