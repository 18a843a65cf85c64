"""Store: schema, permissions, conversations, streaming answers, feedback edits."""

from __future__ import annotations

import os
import stat

import pytest
import sqlite_utils

from uno_local.errors import NotFoundError, StoreError
from uno_local.store import ConversationSettings, Store
from uno_local.store.migrations import MIGRATIONS, migrate

EXPECTED_COLUMNS = {
    "conversations": ["id", "title", "created_at", "updated_at", "settings"],
    "messages": [
        "id",
        "uid",
        "conversation_id",
        "role",
        "content",
        "created_at",
        "model",
        "settings",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
        "route",
        "cluster",
        "adapter",
        "complete",
        "source",
        "route_reason",
    ],
    "feedback": ["id", "message_id", "rating", "comment", "correction", "created_at", "updated_at"],
}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data" / "uno.db") as s:
        yield s


def test_blank_migrate_gives_exact_columns(store):
    for table, columns in EXPECTED_COLUMNS.items():
        assert [c.name for c in store.db[table].columns] == columns
    assert [r[0] for r in store.db.execute("SELECT name FROM _migrations")] == [
        m.__name__ for m in MIGRATIONS
    ]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_migrate_is_idempotent_and_appends(tmp_path):
    db = sqlite_utils.Database(tmp_path / "x.db")
    assert migrate(db) == [m.__name__ for m in MIGRATIONS]
    assert migrate(db) == []

    def m002_extra(database):
        database.execute("CREATE TABLE extra (id INTEGER PRIMARY KEY)")

    assert migrate(db, [*MIGRATIONS, m002_extra]) == ["m002_extra"]
    assert "extra" in db.table_names()


def test_failed_migration_rolls_back(tmp_path):
    db = sqlite_utils.Database(tmp_path / "x.db")
    migrate(db)

    def m002_broken(database):
        database.execute("CREATE TABLE half (id INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(db, [*MIGRATIONS, m002_broken])
    assert "half" not in db.table_names()
    assert [r[0] for r in db.execute("SELECT name FROM _migrations")] == [m.__name__ for m in MIGRATIONS]


def test_database_file_is_owner_only(tmp_path):
    path = tmp_path / "private" / "uno.db"
    Store(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_corrupt_database_gives_one_sentence(tmp_path):
    path = tmp_path / "uno.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is damaged .*uno doctor --repair"):
        Store(path)
    assert path.read_bytes().startswith(b"this is not sqlite")  # nothing overwritten


def test_conversations_crud_and_search(store):
    a = store.new_conversation("Cooking")
    b = store.new_conversation("Travel")
    store.add_message(b, "user", "Where is Kyoto?")
    assert [c.title for c in store.list_conversations()] == ["Travel", "Cooking"]
    assert [c.id for c in store.list_conversations(search="kyoto")] == [b]
    assert [c.id for c in store.list_conversations(search="cook")] == [a]
    store.rename_conversation(a, "Recipes")
    assert store.get_conversation(a).title == "Recipes"
    store.delete_conversation(b)
    assert store.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0  # cascaded
    with pytest.raises(NotFoundError):
        store.get_conversation(b)


def test_streaming_answer_lifecycle(store):
    cid = store.new_conversation()
    store.add_message(cid, "user", "hi")
    mid = store.start_answer(cid, model="m.gguf", settings={"temperature": 0.0}, route="base")
    assert store.get_message(mid).complete is False
    store.update_answer(mid, "Hel")
    assert store.get_message(mid).content == "Hel"
    store.finish_answer(mid, "Hello", prompt_tokens=5, completion_tokens=2, ttft_ms=1.0, duration_ms=3.0)
    msg = store.get_message(mid)
    assert (msg.content, msg.complete, msg.completion_tokens, msg.settings) == (
        "Hello",
        True,
        2,
        {"temperature": 0.0},
    )
    assert msg.route == "base" and msg.model == "m.gguf"


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([{"rating": 1}], (1, None, None)),
        ([{"rating": 1}, {"rating": -1}], (-1, None, None)),
        ([{"rating": -1}, {"comment": "too long"}], (-1, "too long", None)),
        ([{"correction": "Better."}, {"comment": "x"}, {"comment": ""}], (None, None, "Better.")),
        ([{"rating": 1}, {"rating": None}], None),
        ([{"comment": "a"}, {"comment": None}], None),
    ],
)
def test_feedback_edits(store, steps, expected):
    cid = store.new_conversation()
    store.add_message(cid, "user", "q")
    mid = store.add_message(cid, "assistant", "a")
    for step in steps:
        store.set_feedback(mid, **step)
    fb = store.get_message(mid).feedback
    assert (None if fb is None else (fb.rating, fb.comment, fb.correction)) == expected
    count = store.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
    assert count == (0 if expected is None else 1)


def test_feedback_only_on_answers_and_valid_ratings(store):
    cid = store.new_conversation()
    uid = store.add_message(cid, "user", "q")
    mid = store.add_message(cid, "assistant", "a")
    with pytest.raises(NotFoundError, match="not an assistant answer"):
        store.set_feedback(uid, rating=1)
    with pytest.raises(StoreError, match="rating must be"):
        store.set_feedback(mid, rating=5)
    with pytest.raises(NotFoundError):
        store.set_feedback(9999, rating=1)
    store.set_feedback(mid, rating=1)
    store.delete_feedback(mid)
    assert store.get_message(mid).feedback is None


def test_logs_have_context_and_implicit_feedback(store):
    cid = store.new_conversation()
    store.add_message(cid, "user", "q1")
    a1 = store.add_message(cid, "assistant", "a1")
    store.add_message(cid, "user", "shorter please")
    a2 = store.start_answer(cid)  # interrupted: not a log
    store.update_answer(a2, "par")
    store.set_feedback(a1, rating=-1)
    logs = list(store.logs())
    assert [log.message_id for log in logs] == [a1]
    assert logs[0].messages == [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    assert logs[0].next_user == "shorter please"
    assert logs[0].feedback.rating == -1
    assert store.counts()["incomplete"] == 1


def test_every_write_is_one_immediate_transaction_and_nested_writes_join_it(tmp_path):
    """`Store.write()` is the one transaction idiom: BEGIN IMMEDIATE up front, all or nothing, and a
    store method that writes inside another write (a deploy adopting old rows) joins the outer one."""
    import threading

    store = Store(tmp_path / "uno.db")
    seen = []
    store.db.conn.set_trace_callback(seen.append)
    with pytest.raises(RuntimeError), store.write():
        store.new_conversation("kept only if everything commits")
        with store.write():  # nested: no second BEGIN, no early COMMIT
            store.new_conversation("inner")
        raise RuntimeError("boom")
    store.db.conn.set_trace_callback(None)
    assert store.list_conversations() == []
    assert [s for s in seen if s.split()[0] in {"BEGIN", "COMMIT", "ROLLBACK"}] == [
        "BEGIN IMMEDIATE",
        "ROLLBACK",
    ]
    assert not store.db.conn.in_transaction

    # Another thread's write waits for this one instead of interleaving with it.
    order = []
    with store.write():
        other = threading.Thread(target=lambda: (store.new_conversation("b"), order.append("b")))
        other.start()
        other.join(0.2)
        order.append("a")
    other.join()
    assert order == ["a", "b"] and [c.title for c in store.list_conversations()] == ["b"]
    store.close()


def test_conversation_settings_round_trip_and_a_damaged_value_reads_as_none(store):
    cid = store.new_conversation("Eggs")
    assert store.conversation_settings(cid) == ConversationSettings()
    store.set_conversation_settings(cid, ConversationSettings("Be brief.", 0.0))
    assert store.conversation_settings(cid) == ConversationSettings("Be brief.", 0.0)
    assert store.db.execute("SELECT settings FROM conversations").fetchone() == (
        '{"system_prompt": "Be brief.", "temperature": 0.0}',
    )
    store.set_conversation_settings(cid, ConversationSettings("", None))
    assert store.db.execute("SELECT settings FROM conversations").fetchone() == (None,)
    with store.write() as db:
        db.execute("UPDATE conversations SET settings = '{not json'")
    assert store.conversation_settings(cid) == ConversationSettings()


def test_edit_a_question_and_delete_messages_with_their_feedback(store):
    cid = store.new_conversation()
    question = store.add_message(cid, "user", "Boil an egg?")
    answer = store.add_message(cid, "assistant", "Boil it.")
    store.set_feedback(answer, rating=-1)
    store.edit_message(question, "Poach an egg?")
    assert store.get_message(question).content == "Poach an egg?"
    with pytest.raises(StoreError, match="only your own messages can be edited"):
        store.edit_message(answer, "Poach it.")
    store.delete_messages([answer])
    assert [m.id for m in store.messages(cid)] == [question]
    assert store.db.execute("SELECT COUNT(*) FROM feedback").fetchone() == (0,)
