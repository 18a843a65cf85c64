"""simonw/llm's `logs.db` -> log records: one per model call, with the conversation before it.

Two schemas, both llm's own (llm/migrations.py), are read; a database upgraded from one to the other
holds rows in both:
- m010-m022: `responses(id, prompt, system, response, conversation_id, datetime_utc, ...)`, one row
  per call, grouped by `conversations(id, ...)`;
- m023 on (llm 0.36+): a content-addressed message tree, `messages(hash, parent_hash, role)` with
  their text in `parts(message_hash, position, type, text)` (or in `fragments` through
  `part_fragments`), and `turns(id, thread_id, parent_message_hash, tip_message_hash,
  datetime_utc, ...)`, one per call, whose tip is the answer.
A follow-up prompt after an answer is the user's reaction to it, so it becomes that answer's comment
(implicit feedback), as for UNO dialog records. llm records no ratings.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from uno_local.errors import ImportFormatError
from uno_local.logs import LogRecord

SQLITE_MAGIC = b"SQLite format 3\x00"
NEEDED = {
    "responses": {"id", "prompt", "system", "response", "conversation_id", "datetime_utc"},
    "conversations": {"id"},
}
NEEDED_TREE = {
    "turns": {"id", "tip_message_hash", "datetime_utc"},
    "messages": {"hash", "parent_hash", "role"},
    "parts": {"message_hash", "position", "type", "text"},
}
ROLES = ("system", "user", "assistant")


def read_llm_logs(path: Path) -> list[LogRecord]:
    """Every model call in an llm logs.db, oldest first; the first bad row raises ImportFormatError."""
    try:
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportFormatError(
            f"Cannot open {path} as an llm logs.db ({exc}); nothing was imported."
        ) from exc
    try:
        _check_schema(db, path, NEEDED)
        rows = db.execute(
            "SELECT id, prompt, system, response, conversation_id, datetime_utc FROM responses "
            "ORDER BY datetime_utc, id"
        ).fetchall()
        records = records_from_rows(rows, str(path))
        if _has_tables(db, NEEDED_TREE):
            _check_schema(db, path, NEEDED_TREE)
            records += _tree_records(db, str(path))
    except sqlite3.DatabaseError as exc:
        raise ImportFormatError(
            f"{path} is not a readable llm logs.db ({exc}); nothing was imported."
        ) from exc
    finally:
        db.close()
    if not records:
        raise ImportFormatError(f"{path} holds no llm responses; nothing was imported.")
    return sorted(records, key=lambda r: r.created_at)


def _has_tables(db: sqlite3.Connection, needed: dict) -> bool:
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(needed) <= names


def _check_schema(db: sqlite3.Connection, path: Path, needed: dict) -> None:
    for table, columns in needed.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        missing = sorted(columns - have)
        if missing:
            raise ImportFormatError(
                f"{path} is not an llm logs.db: table {table} lacks {', '.join(missing)}; nothing was imported."
            )


def _tree_records(db: sqlite3.Connection, source: str) -> list[LogRecord]:
    """One record per turn of the message-tree schema: the chain from the root to its answer."""
    parents, roles = {}, {}
    for hash_, parent, role in db.execute("SELECT hash, parent_hash, role FROM messages ORDER BY rowid"):
        parents[hash_], roles[hash_] = parent, role
    texts: dict[str, list[str]] = {}
    for hash_, text in db.execute(
        "SELECT p.message_hash, coalesce(p.text, (SELECT group_concat(f.content, '') FROM part_fragments pf "
        "JOIN fragments f ON f.id = pf.fragment_id WHERE pf.part_id = p.id)) "
        "FROM parts p WHERE p.type = 'text' ORDER BY p.message_hash, p.position"
    ):
        texts.setdefault(hash_, []).append(text or "")
    follow_ups: dict[str, str] = {}  # answer hash -> the first user message after it
    for hash_, parent in parents.items():
        if roles[hash_] == "user" and parent is not None:
            follow_ups.setdefault(parent, "".join(texts.get(hash_, [])))
    records = []
    for turn_id, tip, stamp in db.execute(
        "SELECT id, tip_message_hash, datetime_utc FROM turns ORDER BY rowid"
    ):
        where = f"{source}, turn {turn_id}"
        chain, hash_ = [], tip
        while hash_ is not None:
            if hash_ not in parents or len(chain) > len(parents):
                raise ImportFormatError(
                    f"{where} refers to a message missing from the tree; nothing was imported."
                )
            if roles[hash_] not in ROLES:
                raise ImportFormatError(
                    f"{where} holds a {roles[hash_]!r} message (tool calls are not imported); nothing was imported."
                )
            chain.append({"role": roles[hash_], "content": "".join(texts.get(hash_, []))})
            hash_ = parents[hash_]
        chain.reverse()
        if not chain or chain[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in chain):
            raise ImportFormatError(f"{where} is not a prompt followed by an answer; nothing was imported.")
        _check_time(stamp, where)
        records.append(LogRecord(f"llm:{turn_id}", chain, None, follow_ups.get(tip) or None, None, stamp))
    return records


def _check_time(stamp: object, where: str) -> None:
    try:
        datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        raise ImportFormatError(
            f"{where} has no valid datetime_utc ({stamp!r}); nothing was imported."
        ) from None


def records_from_rows(rows: list[tuple], source: str) -> list[LogRecord]:
    """(id, prompt, system, response, conversation_id, datetime_utc) rows -> records (pure)."""
    threads: dict[str, list[tuple]] = {}
    for row in rows:
        response_id, prompt, system, response, conversation_id, stamp = row
        where = f"{source}, response {response_id}"
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise ImportFormatError(f"{where} has no prompt or response text; nothing was imported.")
        if system is not None and not isinstance(system, str):
            raise ImportFormatError(f"{where} has a system prompt that is not text; nothing was imported.")
        _check_time(stamp, where)
        threads.setdefault(conversation_id or f"single:{response_id}", []).append(row)
    records = []
    for thread in threads.values():
        history: list[dict] = []
        for index, (response_id, prompt, system, response, _conv, stamp) in enumerate(thread):
            if system and not history:
                history.append({"role": "system", "content": system})
            history += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            follow_up = thread[index + 1][1] if index + 1 < len(thread) else None
            records.append(
                LogRecord(f"llm:{response_id}", list(history), None, follow_up or None, None, stamp)
            )
    return records
