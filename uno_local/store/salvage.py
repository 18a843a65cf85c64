"""Salvage: what is readable of a damaged database, copied into a fresh one that takes its place
(`uno doctor --repair`). Rows are copied parents first, stepping over damaged pages; ids stay above
every id the damaged file issued."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path

from uno_local.atomic import SUFFIX
from uno_local.store import Store
from uno_local.store.migrations import AUTOINCREMENT_TABLES, seed_sequence


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> tuple[int, int]:
    """Copy the readable rows of `table`, stepping over damaged pages; returns (copied, seen)."""
    columns = [row[1] for row in dst.execute(f"PRAGMA table_info({table})")]
    try:
        have = {row[1] for row in src.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError:
        return 0, 0
    columns = [c for c in columns if c in have]
    if not columns:
        return 0, 0
    names = ", ".join(columns)
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    copied = seen = 0
    last, step = -(2**63), 1
    while step <= 2**40:
        try:
            cursor = src.execute(f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid", [last])
            for row in cursor:
                last, step = row[0], 1
                seen += 1
                try:
                    dst.execute(insert, row[1:])
                    copied += 1
                except sqlite3.DatabaseError:
                    pass  # a row whose parent was lost
            return copied, seen
        except sqlite3.DatabaseError:
            last, step = last + step, step * 2  # skip past the damage
    return copied, seen


def salvage(db: Path) -> tuple[int, int, Path]:
    """Copy what is readable of the damaged `db` into a fresh database that takes its place; the
    damaged file (and its WAL) move aside. Returns (rows copied, rows seen, the damaged copy)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = db.with_name(f"{db.name}.damaged-{stamp}")
    fresh = db.with_name(f".{db.name}.{os.getpid()}{SUFFIX}")
    fresh.unlink(missing_ok=True)
    Store(fresh).close()  # the current schema, migrated
    src = sqlite3.connect(db)
    dst = sqlite3.connect(fresh)
    dst.execute("PRAGMA foreign_keys=ON")
    copied = seen = 0
    tables = [
        row[0]
        for row in dst.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name != '_migrations'"
        )
    ]
    # parents first: a child row copied before its parent would be dropped as an orphan
    parents = {t: {row[2] for row in dst.execute(f"PRAGMA foreign_key_list({t})")} for t in tables}
    with dst:
        for table in TopologicalSorter(parents).static_order():
            c, s = _copy_table(src, dst, table)
            copied, seen = copied + c, seen + s
        try:  # ids stay above every id the damaged file issued, as far as it can tell
            issued = dict(src.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        except sqlite3.DatabaseError:
            issued = {}
        for table in AUTOINCREMENT_TABLES:
            seed_sequence(dst, table, issued.get(table, 0))
    src.close()
    dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    dst.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
        side = Path(f"{db}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{aside}{suffix}"))
    os.replace(db, aside)
    os.replace(fresh, db)
    return copied, seen, aside
