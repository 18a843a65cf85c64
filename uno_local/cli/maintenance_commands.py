"""`uno doctor` and `uno backup`: check and repair the data dir, and keep a copy of it."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from graphlib import TopologicalSorter
from pathlib import Path

import click

from uno_local import paths
from uno_local.app import App
from uno_local.atomic import SUFFIX
from uno_local.cli import cli
from uno_local.errors import OutputError, StoreCorruptError
from uno_local.store import Store
from uno_local.store.migrations import AUTOINCREMENT_TABLES, seed_sequence


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
def backup(app: App, file: Path) -> None:
    """Copy the database to FILE while it stays in use (SQLite's online backup API)."""
    if file.is_dir():
        file = file / f"uno-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.db"
    if not file.parent.is_dir():
        raise OutputError(
            f"Cannot write {file}: its folder does not exist; create it or choose another path."
        )
    try:
        app.store.backup(file)
    except OSError as exc:
        raise OutputError(f"Cannot write {file} ({exc.strerror}); choose another path.") from exc
    click.echo(f"Backed up {app.store.path} to {file} ({file.stat().st_size:,} bytes).")


@cli.command()
@click.option("--repair", is_flag=True, help="Repair what can be repaired (a damaged database is salvaged).")
@click.pass_obj
def doctor(app: App, repair: bool) -> None:
    """Check the data dir: database integrity, interrupted answers, adapters, leftovers."""
    db = paths.db_path(app.home)
    problems = 0
    store = None
    try:
        store = Store(db, check=False) if db.exists() else None
        result = store.integrity() if store else ["ok"]
    except StoreCorruptError as exc:  # a damaged header fails the open itself
        result = [str(exc.__cause__ or exc)]
    if result == ["ok"]:
        click.echo(f"Database:  ok ({db})")
    else:
        problems += 1
        click.echo(f"Database:  DAMAGED ({len(result)} problem(s), first: {result[0][:120]})")
        if repair:
            if store:
                store.close()
                store = None
            saved, total, aside = salvage(db)
            click.echo(
                f"Repaired:  salvaged {saved:,} of {total:,} rows; the damaged file is kept as {aside}"
            )
            store = Store(db)
        elif store is not None:
            store.close()
            store = None  # its rows cannot be trusted until it is repaired
    if store is not None:
        counts = store.counts()
        click.echo(
            f"Store:     {counts['conversations']} conversations, {counts['messages']} messages, "
            f"{counts['feedback']} feedback, {counts['incomplete']} interrupted answers (kept, marked incomplete)"
        )
        from uno_local.registry import Registry

        registry = Registry(store, paths.adapters_dir(app.home))
        for rec in registry.active():
            problem = registry.problem(rec)
            if problem:
                problems += 1
                click.echo(f"Adapter:   {problem}")
        staging = list(registry.root.glob(".staging-*"))
        if staging:
            problems += 1
            click.echo(f"Leftovers: {len(staging)} interrupted adapter deploy folder(s)")
            if repair:
                registry.clean_staging()
                click.echo("Repaired:  removed them")
        store.close()
    backups = sorted((app.home / "backups").glob("uno-*.db"))
    click.echo(f"Backups:   {len(backups)} automatic ({backups[-1].name if backups else 'none yet'})")
    if (app.home / "crash.log").exists():
        click.echo(f"Crashes:   see {app.home / 'crash.log'}")
    if problems and not repair:
        click.echo("Run `uno doctor --repair` to repair what can be repaired.")
    elif not problems:
        click.echo("No problems found.")


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
