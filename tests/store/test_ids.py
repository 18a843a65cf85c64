"""Ids are never reused: adapter sources and cluster members name message ids, so a new message that
took a deleted one's id would pass for a log an adapter was trained on (m009_autoincrement_ids)."""

from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils
from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.errors import StoreCorruptError
from uno_local.store import Store
from uno_local.store.migrations import MIGRATIONS, m009_autoincrement_ids, migrate
from uno_local.store.salvage import salvage

BEFORE_M009 = MIGRATIONS[: MIGRATIONS.index(m009_autoincrement_ids)]


def test_deleting_the_newest_conversation_frees_no_ids(tmp_path):
    with Store(tmp_path / "uno.db") as store:
        older, _ = store.start_conversation("older", "first question")
        newest, _ = store.start_conversation("newest", "second question")
        store.set_feedback(store.add_message(newest, "assistant", "an answer"), rating=1)
        issued = store.db.execute("SELECT max(id) FROM messages").fetchone()[0]  # every id so far
        store.delete_conversation(newest)
        assert store.add_message(older, "user", "a new question") > issued
        assert store.new_conversation("another") > newest


def old_database(path) -> sqlite3.Connection:
    """A database at m008 holding two conversations, feedback, and an adapter and a cluster that
    name a message deleted since (id 4, the newest), beside an adapter whose sources are damaged."""
    conn = sqlite3.connect(path)
    migrate(sqlite_utils.Database(conn), BEFORE_M009)
    conn.executescript(
        """
        INSERT INTO conversations (id, title, created_at, updated_at, settings)
            VALUES (1, 'a', 't', 't', NULL), (2, 'b', 't', 't', '{"temperature": 0.5}');
        INSERT INTO messages (id, uid, conversation_id, role, content, created_at, route_reason)
            VALUES (1, 'u1', 1, 'user', 'q', 't', NULL), (2, 'u2', 1, 'assistant', 'a', 't', 'near'),
                   (3, 'u3', 2, 'user', 'q2', 't', NULL);
        INSERT INTO feedback (message_id, rating, created_at, updated_at) VALUES (2, -1, 't', 't');
        INSERT INTO adapters (name, version, kind, status, path, checksum, base_model, sources,
                              metrics, created_at)
            VALUES ('e', 1, 'expert', 'deployed', 'p', 'c', 'b', '[2, 4]', '{}', 't'),
                   ('f', 1, 'expert', 'retired', 'p', 'c', 'b', 'damaged', '{}', 't');
        INSERT INTO clusters (label, centroid, members, rules, route, updated_at)
            VALUES (0, '[]', '[2, 4]', '[]', 'base', 't');
        """
    )
    conn.commit()
    return conn


def snapshot(conn: sqlite3.Connection) -> dict:
    """Every row, foreign key and index of the app's tables (not the sequence)."""
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name != '_migrations' ORDER BY name"
        )
    ]
    return {
        table: (
            conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall(),
            conn.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            sorted(conn.execute(f"PRAGMA index_list({table})").fetchall()),
            sorted(
                conn.execute(
                    "SELECT name, sql FROM sqlite_master WHERE tbl_name = ? AND type != 'table'", [table]
                ).fetchall(),
                key=str,
            ),
        )
        for table in tables
    }


def test_an_existing_database_keeps_every_row_key_and_index(tmp_path):
    path = tmp_path / "uno.db"
    conn = old_database(path)
    before = snapshot(conn)
    conn.close()
    with Store(path) as store:
        assert snapshot(store.db.conn) == before
        assert store.integrity() == ["ok"]
        assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        schema = dict(store.db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
        assert "AUTOINCREMENT" in schema["messages"] and "AUTOINCREMENT" in schema["conversations"]
        assert "AUTOINCREMENT" not in schema["feedback"]  # nothing names a feedback row's id
        # above message 4, which only the adapter and the cluster still name
        assert store.add_message(1, "user", "new") == 5
        assert store.new_conversation() == 3
        with pytest.raises(sqlite3.IntegrityError):  # the foreign keys still hold...
            store.db.execute(
                "INSERT INTO feedback (message_id, created_at, updated_at) VALUES (99, 't', 't')"
            )
        store.delete_conversation(1)  # ...and cascade
        assert store.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0


def test_an_empty_database_migrates_and_counts_from_one(tmp_path):
    path = tmp_path / "uno.db"
    migrate(sqlite_utils.Database(path), BEFORE_M009)
    with Store(path) as store:
        conversation_id, message_id = store.start_conversation("t", "q")
    assert (conversation_id, message_id) == (1, 1)


def test_rows_pointing_at_missing_parents_roll_the_migration_back_until_doctor_repairs(uno_home):
    uno_home.mkdir()
    path = uno_home / "uno.db"
    conn = old_database(path)
    conn.execute("INSERT INTO feedback (message_id, created_at, updated_at) VALUES (42, 't', 't')")
    conn.commit()  # written with foreign keys off, as sqlite3 leaves them
    before = snapshot(conn)
    conn.close()
    with pytest.raises(
        StoreCorruptError, match="feedback rows point at missing messages rows.*doctor --repair"
    ):
        Store(path)
    conn = sqlite3.connect(path)
    assert snapshot(conn) == before
    assert "m009_autoincrement_ids" not in {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    conn.close()
    result = CliRunner().invoke(cli, ["doctor", "--repair"])
    assert result.exit_code == 0 and "salvaged" in result.stdout, result.output
    with Store(path) as store:  # the orphan is gone, everything else kept
        assert store.counts()["feedback"] == 1 and store.counts()["messages"] == 3
        assert store.add_message(1, "user", "new") == 5


def test_a_salvaged_database_reissues_no_id(tmp_path):
    path = tmp_path / "uno.db"
    with Store(path) as store:
        older, _ = store.start_conversation("older", "first question")
        newest, question = store.start_conversation("newest", "second question")
        store.delete_conversation(newest)
    salvage(path)
    with Store(path) as store:
        assert store.add_message(older, "user", "a new question") > question
        assert store.new_conversation() > newest
