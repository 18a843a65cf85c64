"""The SQLite store: conversations, messages and feedback (sqlite-utils, WAL, foreign keys).

`Store(path)` opens (creating owner-only), checks (`PRAGMA quick_check`) and migrates the database,
taking a backup first when a migration is due on existing data. Answers are written while they
stream (`start_answer` / `update_answer` / `finish_answer`), so a crash mid-answer leaves the user's
message and the partial answer, marked incomplete. Every SQLite failure leaves a Store method as one
`StoreError` sentence (disk full, busy, read-only, corrupt: see `store_error`).

This module holds the connection, transactions and backups; the conversation, message, feedback and
log queries are in `store/conversations.py`, the failure sentences in `store/failures.py`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from uno_local.store._sqlite import sqlite_utils  # before migrations: keeps pandas out
from uno_local.store.conversations import UNSET, ConversationQueries
from uno_local.store.failures import BUSY_TIMEOUT_S, locked, store_error
from uno_local.store.migrations import MIGRATIONS, migrate
from uno_local.store.records import Conversation, ConversationSettings, Feedback, Log, Message, now_iso

BACKUPS_KEPT = 3

__all__ = [
    "Store",
    "Conversation",
    "ConversationSettings",
    "Feedback",
    "Log",
    "Message",
    "UNSET",
    "now_iso",
    "store_error",
]


class Store(ConversationQueries):
    """All reads and writes of the app's SQLite database (thread-safe: one lock per store)."""

    def __init__(self, path: Path | str, *, check: bool = True) -> None:
        """Open (creating owner-only) and migrate; `check=False` skips the integrity check (doctor)."""
        self.path = Path(path)
        self._lock = threading.RLock()
        self._writing = False  # inside write(): nested writes join the transaction
        self._backed_up = False  # backup_once: one automatic backup per process
        try:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
            if not self.path.is_symlink() and self.path.stat().st_mode & 0o077:
                os.chmod(self.path, 0o600)  # a symlink's target is the user's business
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
            if check:
                self._quick_check()
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is crash-safe for the app in WAL mode and spares an fsync per streaming checkpoint.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            if self._pending_migrations() and self._has_data():
                self.backup_auto("migration")
            migrate(self.db)
        except (sqlite3.Error, OSError) as exc:
            if hasattr(self, "db"):
                self.db.conn.close()
            raise store_error(exc, self.path) from exc

    def _quick_check(self) -> None:
        rows = [row[0] for row in self.db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise sqlite3.DatabaseError(f"database disk image is malformed: {rows[0]}")

    def _pending_migrations(self) -> list[str]:
        names = {fn.__name__ for fn in MIGRATIONS}
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = '_migrations'").fetchone():
            names -= {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
        return sorted(names)

    def _has_data(self) -> bool:
        return bool(self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone())

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self):
        """The one way to write: everything inside commits together or not at all, in a transaction
        taken up front (BEGIN IMMEDIATE), so a read-then-write never fails with `database is locked`
        while another process writes: it waits its turn instead. Holds the store's lock (the TUI's
        threads share one connection); a `write()` inside another joins the outer transaction."""
        with self._lock:
            conn = self.db.conn
            if self._writing:
                yield self.db
                return
            self._writing = True
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield self.db
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise store_error(exc, self.path) from exc
                raise
            finally:
                self._writing = False

    # backups
    @locked
    def backup(self, dest: Path | str) -> Path:
        """A consistent copy of the live database at `dest` (SQLite's online backup API), owner-only."""
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.uno-partial")
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        try:
            target = sqlite3.connect(tmp)
            try:
                self.db.conn.backup(target)
            finally:
                target.close()
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return dest

    def backup_auto(self, reason: str) -> Path:
        """Keep a copy in `backups/` before a retrain or migration changes anything; the newest
        BACKUPS_KEPT stay."""
        folder = self.path.parent / "backups"
        folder.mkdir(mode=0o700, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dest = self.backup(folder / f"uno-{stamp}-{reason}.db")
        for old in sorted(folder.glob("uno-*.db"))[:-BACKUPS_KEPT]:
            old.unlink(missing_ok=True)
        return dest

    def backup_once(self, reason: str) -> None:
        """`backup_auto` the first time it is asked for in this process (one per retrain)."""
        if not self._backed_up:
            self.backup_auto(reason)
            self._backed_up = True

    @locked
    def integrity(self) -> list[str]:
        """`PRAGMA integrity_check`: ["ok"] or the problems found."""
        return [row[0] for row in self.db.execute("PRAGMA integrity_check").fetchall()]
