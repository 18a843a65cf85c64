"""The JSONL log format: parse (pure), import into the store (all or nothing), export.

One record per answered turn:
  {"id", "messages": [context..., the assistant answer last],
   "feedback": {"rating": 1|-1|null, "comment": str|null, "correction": str|null}, "created_at"}
Import also accepts UNO/MemoryBench records {"dialog": [user, assistant, user, ...]}: the user
turns after the first answer become that answer's feedback comment. See docs/log-format.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from uno_local.atomic import atomic_write
from uno_local.errors import ImportFormatError, OutputError
from uno_local.store import Store, now_iso

# A guard against garbage, not a format limit: export refuses to write a line import would refuse.
MAX_LINE_BYTES = 16_000_000
ROLES = ("system", "user", "assistant")
BOM = b"\xef\xbb\xbf"
# Characters that str.splitlines() and some editors treat as line breaks; JSON leaves them raw.
LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


@dataclass
class LogRecord:
    uid: str
    messages: list[dict]
    rating: int | None
    comment: str | None
    correction: str | None
    created_at: str
    where: str = ""  # "file, line N", for messages about this record


@dataclass
class ImportResult:
    added: int
    skipped: int


def parse_log_lines(data: bytes, source: str = "input") -> list[LogRecord]:
    """Parse a whole JSONL file; the first bad line raises ImportFormatError naming it."""
    records: list[LogRecord] = []
    data = data.removeprefix(BOM)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{source}, line {number}"
        if len(raw) > MAX_LINE_BYTES:
            raise ImportFormatError(
                f"{where} is {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit "
                "for one record; nothing was imported."
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFormatError(
                f"{where} is not valid UTF-8 (byte {exc.start + 1}); nothing was imported."
            ) from exc
        try:
            obj = json.loads(text)
            record = parse_record(obj)
            # Lone surrogates ("\\ud800") are legal JSON escapes but not text SQLite can store.
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                f"{where} is not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno}); nothing was imported."
            ) from exc
        except RecursionError as exc:
            raise ImportFormatError(
                f"{where} is nested too deeply to be a log record; nothing was imported."
            ) from exc
        except UnicodeEncodeError as exc:
            raise ImportFormatError(
                f"{where} holds a lone surrogate escape ({exc.object[exc.start]!r}), which is not text; "
                "nothing was imported."
            ) from exc
        except ValueError as exc:
            raise ImportFormatError(f"{where}: {exc}; nothing was imported.") from exc
        record.where = where
        records.append(record)
    if not records:
        raise ImportFormatError(f"{source} holds no log records; nothing was imported.")
    return records


def parse_record(obj: object) -> LogRecord:
    """One record in either accepted form; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("a record must be a JSON object")
    if "messages" in obj:
        return _parse_messages_record(obj)
    if "dialog" in obj:
        return _parse_dialog_record(obj)
    raise ValueError('a record needs "messages" (or "dialog")')


def _parse_messages_record(obj: dict) -> LogRecord:
    messages = _messages(obj["messages"], "messages")
    if messages[-1]["role"] != "assistant":
        raise ValueError('the last of "messages" must be the assistant answer')
    if not any(m["role"] == "user" for m in messages):
        raise ValueError('"messages" must contain a user turn before the answer')
    feedback = obj.get("feedback") or {}
    if not isinstance(feedback, dict):
        raise ValueError('"feedback" must be an object')
    rating = feedback.get("rating")
    if rating is not None and (isinstance(rating, bool) or rating not in (1, -1)):
        raise ValueError('"feedback.rating" must be 1, -1 or null')
    comment = _optional_str(feedback, "comment")
    correction = _optional_str(feedback, "correction")
    return LogRecord(_uid(obj), messages, rating, comment, correction, _created_at(obj))


def _parse_dialog_record(obj: dict) -> LogRecord:
    # Plain strings alternate user, assistant, user, ...; objects carry their own role.
    raw = _list(obj["dialog"], "dialog")
    turns = _messages(
        [
            t if isinstance(t, dict) else {"role": ("user", "assistant")[i % 2], "content": t}
            for i, t in enumerate(raw)
        ],
        "dialog",
    )
    first_answer = next((i for i, m in enumerate(turns) if m["role"] == "assistant"), None)
    if first_answer is None or not any(m["role"] == "user" for m in turns[:first_answer]):
        raise ValueError('"dialog" needs a user turn followed by an assistant answer')
    later_user = [m["content"] for m in turns[first_answer + 1 :] if m["role"] == "user"]
    comment = "\n".join(later_user) if later_user else None
    return LogRecord(_uid(obj), turns[: first_answer + 1], None, comment, None, _created_at(obj))


def _list(value: object, name: str) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f'"{name}" must be a non-empty list')
    return value


def _messages(value: object, name: str) -> list[dict]:
    out = []
    for index, item in enumerate(_list(value, name)):
        if not isinstance(item, dict):
            raise ValueError(f'"{name}[{index}]" must be an object with "role" and "content"')
        role, content = item.get("role"), item.get("content")
        if role not in ROLES:
            raise ValueError(f'"{name}[{index}].role" must be one of {", ".join(ROLES)}')
        if not isinstance(content, str):
            raise ValueError(f'"{name}[{index}].content" must be a string')
        out.append({"role": role, "content": content})
    return out


def _optional_str(feedback: dict, key: str) -> str | None:
    value = feedback.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f'"feedback.{key}" must be a string or null')
    return value or None


def _uid(obj: dict) -> str:
    if obj.get("id") is not None:
        if not isinstance(obj["id"], str | int) or isinstance(obj["id"], bool):
            raise ValueError('"id" must be a string or an integer')
        return str(obj["id"])
    canonical = json.dumps(
        {k: obj[k] for k in ("messages", "dialog", "feedback") if k in obj}, sort_keys=True
    )
    return "sha256-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _created_at(obj: dict) -> str:
    value = obj.get("created_at")
    if value is None:
        return now_iso()
    if not isinstance(value, str):
        raise ValueError('"created_at" must be an ISO 8601 string')
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f'"created_at" is not an ISO 8601 time: {value[:40]!r}') from None
    return value


def import_records(store: Store, records: list[LogRecord], title_prefix: str = "Imported") -> ImportResult:
    """Add each record as its own conversation, in one transaction; ids already imported or
    exported (an answer's uid) are skipped; an id held by another kind of message is refused."""
    added = skipped = 0
    with store.write():
        for record in records:
            kind = store.uid_kind(record.uid)
            if kind == "answer":
                skipped += 1
                continue
            if kind is not None:
                raise ImportFormatError(
                    f"{record.where or 'A record'}: the id {record.uid[:80]!r} already names a question "
                    "in this store, not an answer; give the record another id. Nothing was imported."
                )
            title = (
                f"{title_prefix}: {record.messages[-2]['content'][:40] if len(record.messages) > 1 else ''}"
            )
            has_feedback = record.rating is not None or record.comment or record.correction
            store.import_turn(
                title.strip(),
                record.messages,
                uid=record.uid,
                created_at=record.created_at,
                feedback=(record.rating, record.comment, record.correction) if has_feedback else None,
            )
            added += 1
    return ImportResult(added, skipped)


def import_file(store: Store, path: Path) -> ImportResult:
    """Read, validate every line, then import all records or none."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"Cannot read {path} ({exc.strerror}); check the path.") from exc
    return import_records(store, parse_log_lines(data, source=str(path)))


def export_records(store: Store) -> list[dict]:
    """Every answered turn in the log format, oldest conversation first."""
    out = []
    for log in store.logs():
        fb = log.feedback
        out.append(
            {
                "id": log.uid,
                "messages": log.messages,
                "feedback": {
                    "rating": fb.rating if fb else None,
                    "comment": fb.comment if fb else None,
                    "correction": fb.correction if fb else None,
                },
                "created_at": log.created_at,
            }
        )
    return out


def dump_line(record: dict) -> str:
    """One compact JSONL line, with Unicode line separators escaped so every tool sees one line."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    for char, escape in LINE_BREAKS.items():
        line = line.replace(char, escape)
    return line


def export_file(store: Store, path: Path) -> int:
    """Write the JSONL export atomically (temp file + rename); returns the record count."""
    records = export_records(store)
    with atomic_write(path) as handle:
        for record in records:
            line = dump_line(record)
            if len(line.encode("utf-8")) > MAX_LINE_BYTES:
                raise OutputError(
                    f"Answer {record['id']} is over the {MAX_LINE_BYTES:,}-byte record limit that import "
                    f"accepts; nothing was written to {path}."
                )
            handle.write(line + "\n")
    return len(records)
