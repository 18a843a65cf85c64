"""One chat turn, end to end: store the user's message, route, stream the answer, store it.

The answer row is created before the first token and checkpointed while it streams, so a crash
leaves the user's message and the partial answer (marked incomplete). Used by the TUI and `uno ask`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from uno_local.runtime import ChatStats, GenerationSettings, Runtime, StreamEvent
from uno_local.store import Store

CHECKPOINT_SECONDS = 0.25


@dataclass
class RoutePlan:
    """Which path answers a query: 'base', 'expert' (an adapter) or 'reflective'."""

    route: str = "base"
    adapter: str | None = None
    cluster: str | None = None
    reason: str = "no learned adapters"


class Responder(Protocol):
    """Turns a context into a routed answer stream (the UNO router implements this)."""

    def respond(
        self, messages: list[dict], settings: GenerationSettings
    ) -> tuple[RoutePlan, Iterator[StreamEvent]]: ...


@dataclass
class BaseResponder:
    """Every query goes to the base model."""

    runtime: Runtime

    def respond(self, messages, settings):
        return RoutePlan(), self.runtime.stream(messages, settings)


def history_for_model(store: Store, conversation_id: int) -> list[dict]:
    """The conversation as chat messages; interrupted partial answers are left out."""
    return [
        {"role": m.role, "content": m.content}
        for m in store.messages(conversation_id)
        if m.complete and m.content
    ]


def start_planned_answer(
    store: Store, conversation_id: int, model: str, settings, plan: RoutePlan, source: str
) -> int:
    """The answer row (incomplete until finished) for a turn routed by `plan`."""
    return store.start_answer(
        conversation_id,
        model=model,
        settings=settings.as_dict(),
        route=plan.route,
        cluster=plan.cluster,
        adapter=plan.adapter,
        route_reason=plan.reason,
        source=source,
    )


@dataclass
class Turn:
    """A streaming answer. Iterate it for text deltas; `stats` is set when it ends."""

    user_id: int
    answer_id: int
    plan: RoutePlan
    events: Iterator[StreamEvent]
    store: Store
    text: str = ""
    stats: ChatStats | None = None
    _parts: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[str]:
        last_save = time.monotonic()
        finished = False
        try:
            for event in self.events:
                if event.stats is not None:
                    self.stats = event.stats
                if event.delta:
                    self._parts.append(event.delta)
                    yield event.delta
                    if time.monotonic() - last_save >= CHECKPOINT_SECONDS:
                        self.store.update_answer(self.answer_id, "".join(self._parts))
                        last_save = time.monotonic()
            finished = True
        finally:
            if not finished:
                self.close()  # free the runtime (its lock) now, not at garbage collection
            self.text = "".join(self._parts)
            stats = self.stats
            self.store.finish_answer(
                self.answer_id,
                self.text,
                complete=finished,
                prompt_tokens=stats.prompt_tokens if stats else None,
                completion_tokens=stats.completion_tokens if stats else len(self._parts),
                ttft_ms=stats.ttft_ms if stats else None,
                duration_ms=stats.duration_ms if stats else None,
            )

    def close(self) -> None:
        """Stop the answer: the runtime's stream is closed (freeing the model) and the partial text kept."""
        close_events = getattr(self.events, "close", None)
        if close_events is not None:
            close_events()

    def run(self) -> str:
        """Consume the whole stream; returns the answer text."""
        for _ in self:
            pass
        return self.text


class ChatService:
    """Glue between the store, the responder and a UI."""

    def __init__(self, store: Store, runtime: Runtime, responder: Responder | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.responder = responder or BaseResponder(runtime)

    def send(
        self, conversation_id: int, text: str, settings: GenerationSettings, *, source: str = "chat"
    ) -> Turn:
        """Store the user's message and start the answer; iterate the result to stream it."""
        user_id = self.store.add_message(conversation_id, "user", text, source=source)
        return self.reply(conversation_id, user_id, settings, source)

    def reply(
        self, conversation_id: int, user_id: int, settings: GenerationSettings, source: str = "chat"
    ) -> Turn:
        """Start the answer to the stored user message `user_id`. The oldest turns are left out when
        the history outgrows the context window; a message too long alone is refused before the
        answer row exists (ContextOverflowError), the message itself stays stored."""
        messages = history_for_model(self.store, conversation_id)
        fit = getattr(self.runtime, "fit", None)
        if fit is not None:
            messages = fit(messages)
        plan, events = self.responder.respond(messages, settings)
        answer_id = start_planned_answer(
            self.store, conversation_id, self.runtime.model_name, settings, plan, source
        )
        return Turn(user_id, answer_id, plan, events, self.store)
