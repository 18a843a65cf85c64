"""`uno doctor` and `uno backup`: check and repair the data dir, and keep a copy of it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from uno_local import paths
from uno_local.app import App
from uno_local.cli import cli
from uno_local.errors import OutputError, StoreCorruptError
from uno_local.store import Store
from uno_local.store.salvage import salvage


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
