"""Plain records read from the store: conversations, messages, feedback, logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


def now_iso() -> str:
    """UTC timestamp in ISO 8601 with microseconds; sorts as text."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Conversation:
    id: int
    title: str
    created_at: str
    updated_at: str
    message_count: int = 0


@dataclass
class ConversationSettings:
    """What one conversation sets for itself; None keeps uno.toml's value."""

    system_prompt: str | None = None
    temperature: float | None = None


@dataclass
class Feedback:
    message_id: int
    rating: int | None
    comment: str | None
    correction: str | None
    created_at: str
    updated_at: str

    @property
    def is_empty(self) -> bool:
        return self.rating is None and not self.comment and not self.correction


@dataclass
class Message:
    id: int
    uid: str
    conversation_id: int
    role: str
    content: str
    created_at: str
    model: str | None = None
    settings: dict | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    route: str | None = None
    cluster: str | None = None
    adapter: str | None = None
    complete: bool = True
    source: str = "chat"
    route_reason: str | None = None
    feedback: Feedback | None = None


@dataclass
class Log:
    """One answered turn: the context, the assistant answer last, and the user's reaction."""

    message_id: int
    uid: str
    conversation_id: int
    messages: list[dict]
    created_at: str
    feedback: Feedback | None = None
    next_user: str | None = None  # the user's next message: implicit feedback for the UNO loop
    extra: dict = field(default_factory=dict)

    @property
    def query(self) -> str:
        return self.messages[-2]["content"] if len(self.messages) >= 2 else ""

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]
