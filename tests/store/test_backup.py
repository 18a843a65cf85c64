"""Backups: `uno backup FILE` on SQLite's online backup API, and the automatic ones taken before a
migration or a retrain's deploy changes anything."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.registry import Registry
from uno_local.store import Store
from uno_local.store.migrations import MIGRATIONS, migrate


def rows(path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("conversations", "messages")
        }
    finally:
        conn.close()


def test_backup_command_copies_a_live_database(uno_home, tmp_path):
    with Store(uno_home / "uno.db") as store:
        conversation_id, _ = store.start_conversation("chat", "keep me")
        reader = sqlite3.connect(uno_home / "uno.db")
        reader.execute("BEGIN")
        reader.execute("SELECT * FROM messages").fetchall()  # another process mid-read
        result = CliRunner().invoke(cli, ["backup", str(tmp_path / "copy.db")])
        reader.close()
    assert result.exit_code == 0, result.stderr
    assert "Backed up" in result.stdout
    copy = tmp_path / "copy.db"
    assert copy.stat().st_mode & 0o777 == 0o600
    assert rows(copy) == {"conversations": 1, "messages": 1}
    with Store(copy) as restored:
        assert restored.messages(conversation_id)[0].content == "keep me"
        assert restored.integrity() == ["ok"]


def test_backup_to_a_missing_folder_is_one_sentence(uno_home, tmp_path):
    result = CliRunner().invoke(cli, ["backup", str(tmp_path / "nope" / "copy.db")])
    assert result.exit_code == 1 and result.stderr.startswith("Error: Cannot write")
    assert result.stderr.count("\n") == 1


def test_a_migration_on_existing_data_takes_a_backup_first(tmp_path):
    path = tmp_path / "uno.db"
    conn = sqlite3.connect(path)
    import sqlite_utils

    migrate(sqlite_utils.Database(conn), MIGRATIONS[:-1])  # the schema before the newest migration
    conn.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('old', 'x', 'x')")
    conn.commit()
    conn.close()
    Store(path).close()
    (backup,) = (tmp_path / "backups").glob("uno-*-migration.db")
    names = {r[0] for r in sqlite3.connect(backup).execute("SELECT name FROM _migrations")}
    assert MIGRATIONS[-1].__name__ not in names and rows(backup)["conversations"] == 1
    Store(path).close()  # nothing left to migrate: no second backup
    assert len(list((tmp_path / "backups").glob("uno-*.db"))) == 1


def test_a_fresh_store_takes_no_backup(tmp_path):
    Store(tmp_path / "uno.db").close()
    assert not (tmp_path / "backups").exists()


def test_a_retrain_backs_up_once_before_its_first_deploy(tmp_path):
    src = tmp_path / "a.gguf"
    src.write_bytes(b"GGUF" + b"\0" * 32)
    with Store(tmp_path / "uno.db") as store:
        registry = Registry(store, tmp_path / "adapters")
        for name in ("one", "two"):
            registry.deploy(
                name=name,
                kind="expert",
                gguf_file=src,
                peft_dir=None,
                base_model="b",
                sources=[],
                metrics={},
                config={},
            )
    (backup,) = (tmp_path / "backups").glob("uno-*-retrain.db")
    assert sqlite3.connect(backup).execute("SELECT COUNT(*) FROM adapters").fetchone()[0] == 0
