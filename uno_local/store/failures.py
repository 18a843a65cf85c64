"""How a Store meets SQLite failures: each leaves as one `StoreError` sentence, under one lock.

`store_error(exc, path)` turns a SQLite (or file system) failure into the sentence for its cause (disk
full, busy, read-only, cannot open, corrupt); `locked` wraps a Store method in the store's lock and
that conversion.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from pathlib import Path

from uno_local.errors import (
    StoreBusyError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreReadOnlyError,
)

BUSY_TIMEOUT_S = 30
LOW_SPACE_BYTES = 1 << 20


def store_error(exc: BaseException, path: Path | str) -> StoreError:
    """One sentence for a SQLite (or file system) failure on the database at `path`."""
    if isinstance(exc, StoreError):
        return exc
    text = str(exc).lower()
    code = getattr(exc, "sqlite_errorname", "") or ""
    # An I/O error on a disk without room is a full disk (SQLite reports some ENOSPC as SQLITE_IOERR).
    low_space = "disk i/o" in text and _free_bytes(Path(path).parent) < LOW_SPACE_BYTES
    if "full" in text or code == "SQLITE_FULL" or getattr(exc, "errno", None) == 28 or low_space:
        return StoreFullError(
            f"The disk holding {path} is full; free some space and try again (nothing was changed)."
        )
    if "locked" in text or "busy" in text or code.startswith("SQLITE_BUSY"):
        return StoreBusyError(
            f"The database {path} stayed busy with another uno command for {BUSY_TIMEOUT_S} s; "
            "wait for it to finish and try again (nothing was changed)."
        )
    if (
        "readonly" in text
        or "read-only" in text
        or "permission" in text
        or code.startswith("SQLITE_READONLY")
    ):
        return StoreReadOnlyError(
            f"The database {path} or its folder cannot be written; make them writable "
            "(or set UNO_HOME to another folder) and try again."
        )
    if "unable to open" in text or code == "SQLITE_CANTOPEN" or isinstance(exc, OSError):
        return StoreReadOnlyError(
            f"Cannot open the database {path} ({getattr(exc, 'strerror', None) or exc}); check that its "
            "folder exists and is writable, or set UNO_HOME to another folder."
        )
    if "malformed" in text or "not a database" in text or code in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
        return StoreCorruptError(
            f"The database {path} is damaged ({exc}); run `uno doctor --repair` to salvage it "
            "(it keeps a copy of the damaged file)."
        )
    if "disk i/o" in text:
        return StoreError(
            f"Reading or writing the database {path} failed ({exc}); check the disk, then run `uno doctor`."
        )
    return StoreError(f"The database {path} failed ({exc}); run `uno doctor` to check it.")


def _free_bytes(folder: Path) -> int:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return LOW_SPACE_BYTES
    return stat.f_bavail * stat.f_frsize


def locked(method):
    """Serialise a Store method (the TUI's worker thread and its UI thread share one connection);
    a SQLite failure leaves it as one StoreError sentence."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc

    return wrapper
