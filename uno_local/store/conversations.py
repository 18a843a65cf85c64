"""The Store's conversation queries: conversations, their messages and feedback, and the logs.

`ConversationQueries` is a part of `Store` (its base class), kept in its own module: it reads and
writes through the store's `db`, `write()` and lock, so it is never used on its own. A conversation
is created with its first message (`start_conversation`); answers are written while they stream
(`start_answer` / `update_answer` / `finish_answer`); `logs()` reads back every complete answer with
its context, the input of the learning loop.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from uno_local.errors import NotFoundError, StoreError
from uno_local.store.failures import locked
from uno_local.store.records import Conversation, ConversationSettings, Feedback, Log, Message, now_iso

UNSET: Any = object()  # set_feedback's default: the field keeps its value


class ConversationQueries:
    """Conversations, messages, feedback and logs (mixed into `Store`, which holds the connection)."""

    # conversations
    @locked
    def new_conversation(self, title: str = "New chat") -> int:
        stamp = now_iso()
        with self.write():
            cur = self.db.execute(
                "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                [title, stamp, stamp],
            )
        return cur.lastrowid

    @locked
    def start_conversation(self, title: str, content: str, **meta: Any) -> tuple[int, int]:
        """Create a conversation holding the user's first message, in one transaction (a crash or a
        failed model load never leaves a conversation without its question). Returns both ids."""
        stamp = now_iso()
        with self.write() as db:
            conversation_id = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                [title, stamp, stamp],
            ).lastrowid
            message_id = self._insert_message(conversation_id, "user", content, **meta)
        return conversation_id, message_id

    @locked
    def import_turn(
        self,
        title: str,
        messages: list[dict],
        *,
        uid: str,
        created_at: str,
        feedback: tuple[int | None, str | None, str | None] | None = None,
    ) -> int:
        """A conversation holding an imported answered turn: `messages` (the earlier ones as context), the
        last with `uid` and its `feedback` (rating, comment, correction). Returns its conversation id."""
        with self.write() as db:
            conversation_id = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
                [title, created_at, created_at],
            ).lastrowid
            for index, message in enumerate(messages):
                last = index == len(messages) - 1
                db.execute(
                    "INSERT INTO messages (uid, conversation_id, role, content, created_at, source) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        # Context messages get their own random uids: never a record id's namespace.
                        uid if last else uuid.uuid4().hex,
                        conversation_id,
                        message["role"],
                        message["content"],
                        created_at,
                        "import" if last else "context",
                    ],
                )
            if feedback is not None:
                db.execute(
                    "INSERT INTO feedback (message_id, rating, comment, correction, created_at, updated_at) "
                    "VALUES (last_insert_rowid(), ?, ?, ?, ?, ?)",
                    [*feedback, created_at, created_at],
                )
        return conversation_id

    @locked
    def rename_conversation(self, conversation_id: int, title: str) -> None:
        self.get_conversation(conversation_id)
        # The list is ordered by activity: a rename keeps the conversation where it is.
        with self.write():
            self.db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?",
                [title.strip() or "Untitled", conversation_id],
            )

    @locked
    def delete_conversation(self, conversation_id: int) -> None:
        self.get_conversation(conversation_id)
        with self.write():
            self.db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    @locked
    def conversation_settings(self, conversation_id: int) -> ConversationSettings:
        """The conversation's own system prompt and temperature (None where it keeps uno.toml's)."""
        self.get_conversation(conversation_id)
        row = self.db.execute("SELECT settings FROM conversations WHERE id = ?", [conversation_id]).fetchone()
        try:
            stored = json.loads(row[0]) if row[0] else {}
        except ValueError:
            stored = {}  # a damaged value reads as "no settings" rather than failing every answer
        return ConversationSettings(
            system_prompt=stored.get("system_prompt") or None, temperature=stored.get("temperature")
        )

    @locked
    def set_conversation_settings(self, conversation_id: int, settings: ConversationSettings) -> None:
        self.get_conversation(conversation_id)
        stored = {k: v for k, v in vars(settings).items() if v not in (None, "")}
        with self.write():
            self.db.execute(
                "UPDATE conversations SET settings = ? WHERE id = ?",
                [json.dumps(stored) if stored else None, conversation_id],
            )

    def get_conversation(self, conversation_id: int) -> Conversation:
        rows = self.list_conversations(ids=[conversation_id])
        if not rows:
            raise NotFoundError(
                f"Conversation {conversation_id} does not exist; `uno status` lists the data."
            )
        return rows[0]

    @locked
    def list_conversations(
        self, search: str | None = None, ids: list[int] | None = None
    ) -> list[Conversation]:
        """Newest first; `search` keeps conversations holding every word of it, in any order, in the
        title, the messages, or the feedback's comments and corrections (case-insensitive)."""
        where, params = [], []
        for word in (search or "").split():
            where.append(
                "(c.title LIKE ? OR EXISTS (SELECT 1 FROM messages s LEFT JOIN feedback f ON "
                "f.message_id = s.id WHERE s.conversation_id = c.id AND (s.content LIKE ? OR "
                "f.comment LIKE ? OR f.correction LIKE ?)))"
            )
            params += [f"%{word}%"] * 4
        if ids is not None:
            where.append(f"c.id IN ({','.join('?' * len(ids))})")
            params += ids
        sql = (
            "SELECT c.id, c.title, c.created_at, c.updated_at, "
            "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) FROM conversations c"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY c.updated_at DESC, c.id DESC"
        )
        return [Conversation(*row) for row in self.db.execute(sql, params).fetchall()]

    # messages
    @locked
    def add_message(self, conversation_id: int, role: str, content: str, **meta: Any) -> int:
        """Append a finished message; `meta` fills the optional columns (model, settings, route...)."""
        return self._insert_message(conversation_id, role, content, complete=True, **meta)

    @locked
    def _insert_message(self, conversation_id: int, role: str, content: str, **meta: Any) -> int:
        self.get_conversation(conversation_id)
        row = {
            "uid": meta.pop("uid", None) or uuid.uuid4().hex,
            "conversation_id": conversation_id,
            "role": role,
            "content": content,
            "created_at": meta.pop("created_at", None) or now_iso(),
            **meta,
        }
        if isinstance(row.get("settings"), dict):
            row["settings"] = json.dumps(row["settings"], sort_keys=True)
        row["complete"] = int(bool(row.get("complete", True)))
        columns = ", ".join(row)
        with self.write():
            cur = self.db.execute(
                f"INSERT INTO messages ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )
            self.db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", [now_iso(), conversation_id]
            )
        return cur.lastrowid

    @locked
    def start_answer(self, conversation_id: int, **meta: Any) -> int:
        """Insert an empty assistant message marked incomplete; the stream fills it in."""
        return self._insert_message(conversation_id, "assistant", "", complete=False, **meta)

    @locked
    def update_answer(self, message_id: int, content: str) -> None:
        """Checkpoint the partial text of a streaming answer."""
        with self.write():
            self.db.execute("UPDATE messages SET content = ? WHERE id = ?", [content, message_id])

    @locked
    def finish_answer(self, message_id: int, content: str, *, complete: bool = True, **meta: Any) -> None:
        """Write the final text and statistics (tokens, timing, route, adapter)."""
        fields = {"content": content, "complete": int(complete), **meta}
        sets = ", ".join(f"{key} = ?" for key in fields)
        with self.write():
            self.db.execute(f"UPDATE messages SET {sets} WHERE id = ?", [*fields.values(), message_id])

    @locked
    def edit_message(self, message_id: int, content: str) -> None:
        """Replace the text of one of the user's messages (edit and resend)."""
        if self.get_message(message_id).role != "user":
            raise StoreError(f"Message {message_id} is an answer; only your own messages can be edited.")
        with self.write():
            self.db.execute("UPDATE messages SET content = ? WHERE id = ?", [content, message_id])

    @locked
    def delete_messages(self, message_ids: list[int]) -> None:
        """Remove these messages with their feedback (a regenerated answer, what followed an edit)."""
        with self.write():
            for message_id in message_ids:
                self.db.execute("DELETE FROM messages WHERE id = ?", [message_id])

    def get_message(self, message_id: int) -> Message:
        rows = self._messages("m.id = ?", [message_id])
        if not rows:
            raise NotFoundError(f"Message {message_id} does not exist.")
        return rows[0]

    def messages(self, conversation_id: int) -> list[Message]:
        return self._messages("m.conversation_id = ?", [conversation_id])

    @locked
    def _messages(self, where: str, params: list) -> list[Message]:
        sql = (
            "SELECT m.id, m.uid, m.conversation_id, m.role, m.content, m.created_at, m.model, m.settings, "
            "m.prompt_tokens, m.completion_tokens, m.ttft_ms, m.duration_ms, m.route, m.cluster, m.adapter, "
            "m.complete, m.source, m.route_reason, f.rating, f.comment, f.correction, f.created_at, f.updated_at "
            f"FROM messages m LEFT JOIN feedback f ON f.message_id = m.id WHERE {where} ORDER BY m.id"
        )
        out = []
        for row in self.db.execute(sql, params).fetchall():
            msg = Message(*row[:18])
            msg.settings = json.loads(msg.settings) if msg.settings else None
            msg.complete = bool(msg.complete)
            if row[21] is not None:
                msg.feedback = Feedback(msg.id, *row[18:23])
            out.append(msg)
        return out

    @locked
    def conversations_answered_with(self, content: str, limit: int = 20) -> list[int]:
        """The newest conversations (at most `limit`) holding a complete answer that reads `content`."""
        rows = self.db.execute(
            "SELECT DISTINCT conversation_id FROM messages WHERE role = 'assistant' AND complete = 1 "
            "AND content = ? ORDER BY conversation_id DESC LIMIT ?",
            [content, limit],
        ).fetchall()
        return [conversation_id for (conversation_id,) in rows]

    @locked
    def uid_kind(self, uid: str) -> str | None:
        """What holds `uid`: "answer" (an answered turn, exported under that id), "other" (a question
        or context message), or None."""
        row = self.db.execute("SELECT role, source FROM messages WHERE uid = ?", [uid]).fetchone()
        if row is None:
            return None
        return "answer" if row[0] == "assistant" and row[1] != "context" else "other"

    # feedback
    @locked
    def set_feedback(
        self, message_id: int, *, rating: Any = UNSET, comment: Any = UNSET, correction: Any = UNSET
    ) -> Feedback | None:
        """Create or change the feedback on an assistant message; fields left UNSET keep their value.

        When every field ends up empty the row is deleted (the feedback was removed).
        """
        message = self.get_message(message_id)
        if message.role != "assistant":
            raise NotFoundError(f"Message {message_id} is not an assistant answer; feedback goes on answers.")
        if rating is not UNSET and rating not in (1, -1, None):
            raise StoreError(f"A rating must be 1, -1 or empty, not {rating!r}.")
        old = message.feedback
        new = {
            "rating": (old.rating if old else None) if rating is UNSET else rating,
            "comment": (old.comment if old else None) if comment is UNSET else (comment or None),
            "correction": (old.correction if old else None) if correction is UNSET else (correction or None),
        }
        stamp = now_iso()
        with self.write():
            if all(value is None for value in new.values()):
                self.db.execute("DELETE FROM feedback WHERE message_id = ?", [message_id])
                return None
            self.db.execute(
                "INSERT INTO feedback (message_id, rating, comment, correction, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(message_id) DO UPDATE SET rating = excluded.rating, "
                "comment = excluded.comment, correction = excluded.correction, updated_at = excluded.updated_at",
                [message_id, new["rating"], new["comment"], new["correction"], stamp, stamp],
            )
        return self.get_message(message_id).feedback

    @locked
    def delete_feedback(self, message_id: int) -> None:
        with self.write():
            self.db.execute("DELETE FROM feedback WHERE message_id = ?", [message_id])

    # logs: answered turns with their context
    def logs(self, *, with_feedback_only: bool = False) -> Iterator[Log]:
        """Every complete assistant answer with its context (oldest first)."""
        for conversation_id in self._conversation_ids():
            history = self.messages(conversation_id)
            for index, msg in enumerate(history):
                # "context" answers came in as another record's history: not turns of their own.
                if msg.role != "assistant" or not msg.complete or msg.source == "context":
                    continue
                if with_feedback_only and msg.feedback is None:
                    continue
                context = [{"role": m.role, "content": m.content} for m in history[: index + 1]]
                following = next((m for m in history[index + 1 :] if m.role == "user"), None)
                yield Log(
                    message_id=msg.id,
                    uid=msg.uid,
                    conversation_id=conversation_id,
                    messages=context,
                    created_at=msg.created_at,
                    feedback=msg.feedback,
                    next_user=following.content if following else None,
                )

    @locked
    def _conversation_ids(self) -> list[int]:
        return [row[0] for row in self.db.execute("SELECT id FROM conversations ORDER BY id")]

    @locked
    def counts(self) -> dict[str, int]:
        """Row counts for `uno status`."""
        one = lambda sql: self.db.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "conversations": one("SELECT COUNT(*) FROM conversations"),
            "messages": one("SELECT COUNT(*) FROM messages"),
            "answers": one("SELECT COUNT(*) FROM messages WHERE role = 'assistant'"),
            "incomplete": one("SELECT COUNT(*) FROM messages WHERE complete = 0"),
            "feedback": one("SELECT COUNT(*) FROM feedback"),
            "corrections": one("SELECT COUNT(*) FROM feedback WHERE correction IS NOT NULL"),
        }
