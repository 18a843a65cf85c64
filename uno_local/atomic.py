"""One atomic file writer: a temp file beside the target, renamed over it when complete.

A failure removes the temp file; a temp file left by a killed process (`.<name>.<pid>.uno-partial`)
is removed by the next write to the same target. Errors become one `OutputError` sentence.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from uno_local.errors import OutputError

SUFFIX = ".uno-partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(target: Path) -> int:
    """Remove temp files of earlier writes to `target` whose process is gone; returns how many."""
    removed = 0
    for leftover in target.parent.glob(f".{target.name}.*{SUFFIX}"):
        pid = leftover.name[len(target.name) + 2 : -len(SUFFIX)]
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def _sentence(path: Path, exc: OSError) -> OutputError:
    reason = {
        28: "the disk is full; free some space",
        2: "its folder does not exist; create it or choose another path",
        21: "it is a directory; give a file name",
        20: "part of the path is not a folder; choose another path",
        13: "permission denied; choose a writable folder",
        30: "the file system is read-only; choose a writable folder",
        122: "the disk quota is exceeded; free some space",
    }.get(exc.errno or 0, f"{exc.strerror or exc}; choose another path")
    return OutputError(f"Cannot write {path}: {reason}. Nothing was written there.")


@contextlib.contextmanager
def atomic_write(path: Path | str, mode: int = 0o600, *, text: bool = True) -> Iterator[IO]:
    """Yield a handle on a temp file; on success it replaces `path` (fsynced), on failure it goes."""
    path = Path(path)
    if path.is_dir():
        raise _sentence(path, IsADirectoryError(21, "Is a directory"))
    tmp = path.with_name(f".{path.name}.{os.getpid()}{SUFFIX}")
    try:
        clean_partials(path)
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode)
    except OSError as exc:
        raise _sentence(path, exc) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") if text else os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _sentence(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
