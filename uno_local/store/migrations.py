"""Append-only schema migrations, recorded in the `_migrations` table.

Never edit a migration that has shipped: add a new function to `MIGRATIONS` instead.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

import sqlite_utils


def m001_initial(db: sqlite_utils.Database) -> None:
    _run_statements(
        db,
        """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            created_at TEXT NOT NULL,
            model TEXT,
            settings TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            ttft_ms REAL,
            duration_ms REAL,
            route TEXT,
            cluster TEXT,
            adapter TEXT,
            complete INTEGER NOT NULL DEFAULT 1,
            source TEXT NOT NULL DEFAULT 'chat'
        );
        CREATE INDEX messages_conversation ON messages(conversation_id, id);
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL UNIQUE REFERENCES messages(id) ON DELETE CASCADE,
            rating INTEGER CHECK (rating IN (1, -1)),
            comment TEXT,
            correction TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    )


def _run_statements(db: sqlite_utils.Database, script: str) -> None:
    # executescript() would COMMIT first; single statements keep a migration in one transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [m001_initial]


def migrate(db: sqlite_utils.Database, migrations: list[Callable] | None = None) -> list[str]:
    """Apply the migrations not yet recorded, in order, each in its own transaction.

    Foreign keys are off while they run and checked before each commits, SQLite's procedure for
    schema changes (https://sqlite.org/lang_altertable.html#otheralter): dropping a table that is
    being rebuilt must not cascade to its children."""
    migrations = MIGRATIONS if migrations is None else migrations
    db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}
    foreign_keys = db.execute("PRAGMA foreign_keys").fetchone()[0]
    db.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set before BEGIN
    applied = []
    try:
        for fn in migrations:
            if fn.__name__ in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                fn(db)
                if foreign_keys and (orphan := db.execute("PRAGMA foreign_key_check").fetchone()):
                    # "malformed": a StoreCorruptError, whose `uno doctor --repair` drops such rows
                    raise sqlite3.DatabaseError(
                        f"database disk image is malformed: {orphan[0]} rows point at "
                        f"missing {orphan[2]} rows"
                    )
                db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    [fn.__name__, datetime.now(UTC).isoformat()],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            applied.append(fn.__name__)
    finally:
        db.execute(f"PRAGMA foreign_keys={foreign_keys}")
    return applied


def m002_adapters(db: sqlite_utils.Database) -> None:
    _run_statements(
        db,
        """
        CREATE TABLE adapters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            kind TEXT NOT NULL,
            cluster TEXT,
            status TEXT NOT NULL CHECK (status IN ('deployed', 'previous', 'retired')),
            enabled INTEGER NOT NULL DEFAULT 1,
            path TEXT NOT NULL,
            checksum TEXT NOT NULL,
            base_model TEXT NOT NULL,
            backend TEXT,
            sources TEXT NOT NULL,
            metrics TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (name, version)
        );
        CREATE INDEX adapters_name ON adapters(name, version)
        """,
    )


MIGRATIONS.append(m002_adapters)


def m003_learning(db: sqlite_utils.Database) -> None:
    _run_statements(
        db,
        """
        CREATE TABLE artifacts (
            stage TEXT NOT NULL,
            key TEXT NOT NULL,
            input_hash TEXT NOT NULL,
            data TEXT NOT NULL,
            provenance TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (stage, key)
        );
        CREATE TABLE clusters (
            label INTEGER PRIMARY KEY,
            centroid TEXT NOT NULL,
            members TEXT NOT NULL,
            rules TEXT NOT NULL,
            user_rules TEXT,
            gap REAL,
            intrinsic_gap REAL,
            high_gap INTEGER NOT NULL DEFAULT 0,
            route TEXT NOT NULL,
            expert TEXT,
            critic TEXT,
            win_rate REAL,
            decision TEXT,
            vetoed INTEGER NOT NULL DEFAULT 0,
            data_hash TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE retrain_runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            stage TEXT,
            summary TEXT
        )
        """,
    )


MIGRATIONS.append(m003_learning)


def m004_route_reason(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE messages ADD COLUMN route_reason TEXT")


MIGRATIONS.append(m004_route_reason)


def m005_cluster_radius(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE clusters ADD COLUMN radius REAL")  # the router's per-cluster cut (cluster.py)


MIGRATIONS.append(m005_cluster_radius)


def m006_context_uids(db: sqlite_utils.Database) -> None:
    # Imported context messages had uids "<record id>:<n>", which clashed with record ids like "k:1".
    db.execute("UPDATE messages SET uid = lower(hex(randomblob(16))) WHERE source = 'context'")


MIGRATIONS.append(m006_context_uids)


def m007_adapter_base(db: sqlite_utils.Database) -> None:
    """Each adapter belongs to the base model it was trained on (backends.gguf_export.base_identity)."""
    db.execute("ALTER TABLE adapters ADD COLUMN base_id TEXT")


MIGRATIONS.append(m007_adapter_base)


def m008_conversation_settings(db: sqlite_utils.Database) -> None:
    """A conversation's own system prompt and temperature (JSON; NULL: uno.toml's)."""
    db.execute("ALTER TABLE conversations ADD COLUMN settings TEXT")


MIGRATIONS.append(m008_conversation_settings)


# Ids that name rows of an AUTOINCREMENT table from elsewhere (a UNION ALL tail): the messages that
# adapters were trained on, clusters hold and per-log artifacts were computed for, deleted or not.
# json_each of NULL is empty: a damaged list is skipped rather than failing a migration or a salvage.
NAMED_IDS = {
    "messages": """
        UNION ALL SELECT j.value FROM adapters a, json_each(iif(json_valid(a.sources), a.sources, NULL)) j
        WHERE j.type = 'integer'
        UNION ALL SELECT j.value FROM clusters c, json_each(iif(json_valid(c.members), c.members, NULL)) j
        WHERE j.type = 'integer'
        UNION ALL SELECT CAST(key AS INTEGER) FROM artifacts WHERE key != '' AND key NOT GLOB '*[^0-9]*'
    """
}
AUTOINCREMENT_TABLES = ("conversations", "messages")


def seed_sequence(db: sqlite_utils.Database | sqlite3.Connection, table: str, floor: int = 0) -> None:
    """Start `table`'s next id above `floor`, its highest id and every id NAMED_IDS finds for it."""
    (top,) = db.execute(
        f"SELECT max(id) FROM (SELECT ? AS id UNION ALL SELECT id FROM {table} {NAMED_IDS.get(table, '')})",
        [floor],
    ).fetchone()
    db.execute("DELETE FROM sqlite_sequence WHERE name = ?", [table])
    if top:
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, top])


def _autoincrement(db: sqlite_utils.Database, table: str) -> None:
    """Rebuild `table` with `id INTEGER PRIMARY KEY AUTOINCREMENT`, keeping its rows, indexes and
    triggers (SQLite's table rebuild; `migrate` turns foreign keys off and checks them)."""
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone()
    new_sql, found = re.subn(
        rf"^CREATE TABLE {table} \((\s*id INTEGER PRIMARY KEY)\b",
        rf"CREATE TABLE _new_{table} (\1 AUTOINCREMENT",
        sql,
    )
    if not found:
        raise sqlite3.OperationalError(f"the {table} table has an unexpected schema")
    extras = db.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
        "AND sql IS NOT NULL",
        [table],
    ).fetchall()
    db.execute(new_sql)
    db.execute(f"INSERT INTO _new_{table} SELECT * FROM {table}")
    db.execute(f"DROP TABLE {table}")
    db.execute(f"ALTER TABLE _new_{table} RENAME TO {table}")
    for (statement,) in extras:
        db.execute(statement)
    seed_sequence(db, table)


def m009_autoincrement_ids(db: sqlite_utils.Database) -> None:
    """Deleting the newest conversation freed its ids for the next ones (INTEGER PRIMARY KEY reuses
    the highest id): a new message could then pass for one an adapter was trained on, and a client
    holding a conversation id (X-Uno-Conversation) could continue a different chat. Now ids only grow."""
    for table in AUTOINCREMENT_TABLES:
        _autoincrement(db, table)


MIGRATIONS.append(m009_autoincrement_ids)
