"""Open WebUI exports -> log records: its chat export and its feedback export.

Both are drawn from Open WebUI's own models (backend/open_webui/models/chats.py and feedbacks.py):
- chat export (Settings > Chats > Export, or /api/v1/chats/all): a list of chats
  {"id", "title", "chat": {"history": {"messages": {id: message}, "currentId"}, ...}, ...}; a message is
  {"id", "parentId", "childrenIds", "role", "content", "timestamp", "annotation"?: {"rating", "reason",
  "comment", ...}}. Every assistant message becomes a record: its branch of the tree from the root.
  Regenerated answers are siblings under one user message: when one sibling is rated up, it becomes
  the correction of each sibling that is not (a preference pair).
- feedback export (/api/v1/evaluations/feedbacks/all/export): a list of
  {"id", "type", "data": {"rating", "reason", "comment", ...}, "meta": {"chat_id", "message_id"},
  "snapshot": {"chat": <chat as above>}}; each becomes the record of its rated message.
The record id is `owui:<chat id>:<message id>` either way, so importing both adds each answer once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from uno_local.errors import ImportFormatError
from uno_local.logs import LogRecord

ROLES = ("system", "user", "assistant")


class _Bad(ValueError):
    """What is wrong with one record; the caller names the record."""


@contextmanager
def _naming_the_item(where: str, item: object) -> Iterator[None]:
    """Checks that `item` (a chat or a feedback entry, at `where` in the file) is an object; a _Bad raised
    about it, here or in the block, becomes an ImportFormatError naming `where` and the item's id."""
    try:
        if not isinstance(item, dict):
            raise _Bad("is not an object")
        where += f" ({item.get('id')})"
        yield
    except _Bad as exc:
        raise ImportFormatError(f"{where} {exc}; nothing was imported.") from None


def is_chat_export(data: object) -> bool:
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "chat" in data[0]


def is_feedback_export(data: object) -> bool:
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "snapshot" in data[0]


def read_chat_export(data: object, source: str) -> list[LogRecord]:
    """Every assistant answer of every chat; the first malformed chat raises ImportFormatError."""
    chats = data if isinstance(data, list) else [data]
    records: list[LogRecord] = []
    for index, chat in enumerate(chats):
        with _naming_the_item(f"{source}, chat {index + 1}", chat):
            records += _chat_records(chat)
    if not records:
        raise ImportFormatError(f"{source} holds no answered messages; nothing was imported.")
    return records


def read_feedback_export(data: object, source: str) -> list[LogRecord]:
    """One record per rating, with the conversation from its snapshot."""
    if not isinstance(data, list) or not data:
        raise ImportFormatError(f"{source} must be a non-empty JSON list of feedback; nothing was imported.")
    records = []
    for index, item in enumerate(data):
        with _naming_the_item(f"{source}, feedback {index + 1}", item):
            meta, rating_data, snapshot = item.get("meta"), item.get("data"), item.get("snapshot")
            if not isinstance(meta, dict) or not isinstance(meta.get("message_id"), str):
                raise _Bad('has no "meta.message_id"')
            if not isinstance(rating_data, dict):
                raise _Bad('has no "data" object')
            if not isinstance(snapshot, dict) or not isinstance(snapshot.get("chat"), dict):
                raise _Bad('has no "snapshot.chat" (the conversation it rates)')
            chat = snapshot["chat"]
            by_id = {r.uid: r for r in _chat_records(chat, with_annotations=False)}
            uid = f"owui:{chat.get('id')}:{meta['message_id']}"
            if uid not in by_id:
                raise _Bad(
                    f"rates message {meta['message_id']}, which its snapshot does not hold as an answer"
                )
            record = by_id[uid]
            record.rating, record.comment = _rating(rating_data), _comment(rating_data)
            records.append(record)
    return records


def _chat_records(chat: dict, with_annotations: bool = True) -> list[LogRecord]:
    body = chat.get("chat")
    history = body.get("history") if isinstance(body, dict) else None
    messages = history.get("messages") if isinstance(history, dict) else None
    if not isinstance(messages, dict):
        raise _Bad('has no "chat.history.messages" object')
    for key, message in messages.items():
        if not isinstance(message, dict):
            raise _Bad(f"message {key} is not an object")
        if message.get("role") not in ROLES:
            raise _Bad(f"message {key} has no role of system, user or assistant")
        if not isinstance(message.get("content"), str):
            raise _Bad(f"message {key} has no text content")
        parent = message.get("parentId")
        if parent is not None and parent not in messages:
            raise _Bad(f"message {key} names a parent {parent} that is not in the chat")
        if message.get("annotation") is not None and not isinstance(message["annotation"], dict):
            raise _Bad(f"message {key} has an annotation that is not an object")
    system = body.get("params", {}).get("system") if isinstance(body.get("params"), dict) else None
    records: dict[str, LogRecord] = {}
    for key, message in messages.items():
        if message["role"] != "assistant":
            continue
        branch = _branch(messages, key)
        if not any(m["role"] == "user" for m in branch):
            raise _Bad(f"answer {key} has no user message before it")
        context = [{"role": m["role"], "content": m["content"]} for m in branch]
        if isinstance(system, str) and system and context[0]["role"] != "system":
            context.insert(0, {"role": "system", "content": system})
        note = message.get("annotation") or {} if with_annotations else {}
        records[key] = LogRecord(
            f"owui:{chat.get('id')}:{key}", context, _rating(note), _comment(note), None, _stamp(message, key)
        )
    _pair_siblings(messages, records)
    return list(records.values())


def _branch(messages: dict, key: str) -> list[dict]:
    branch, seen = [], set()
    while key is not None:
        if key in seen:
            raise _Bad(f"message {key} is its own ancestor")
        seen.add(key)
        branch.append(messages[key])
        key = messages[key].get("parentId")
    return branch[::-1]


def _pair_siblings(messages: dict, records: dict[str, LogRecord]) -> None:
    """Regenerated answers: the sibling rated up corrects each sibling that is not rated up."""
    children: dict[str | None, list[str]] = {}
    for key in records:
        children.setdefault(messages[key].get("parentId"), []).append(key)
    for siblings in children.values():
        chosen = next((k for k in siblings if records[k].rating == 1), None)
        if chosen is None or len(siblings) < 2:
            continue
        for key in siblings:
            if records[key].rating != 1 and records[key].correction is None:
                records[key].correction = records[chosen].messages[-1]["content"]


def _rating(note: dict) -> int | None:
    rating = note.get("rating")
    if rating in (None, 0, "0", ""):
        return None
    if isinstance(rating, bool) or rating not in (1, -1, "1", "-1"):
        raise _Bad(f"has a rating of {rating!r}; Open WebUI ratings are 1 or -1")
    return int(rating)


def _comment(note: dict) -> str | None:
    parts = []
    for name in ("reason", "comment"):
        value = note.get(name)
        if value is not None and not isinstance(value, str):
            raise _Bad(f'has a "{name}" that is not text')
        if value and value.strip():
            parts.append(value.strip())
    return ": ".join(parts) or None


def _stamp(message: dict, key: str) -> str:
    value = message.get("timestamp")
    if value is None:
        return datetime.now(UTC).isoformat(timespec="microseconds")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"message {key} has a timestamp that is not a number")
    if value > 1e11:  # milliseconds
        value /= 1000
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="microseconds")
