"""One chat turn, end to end: store the user's message, route, stream the answer, store it.

The answer row is created before the first token and checkpointed while it streams, so a crash
leaves the user's message and the partial answer (marked incomplete). Used by the TUI and `uno ask`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from uno_local.errors import UnoError
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


def history_for_model(store: Store, conversation_id: int, *, until: int | None = None) -> list[dict]:
    """The conversation as chat messages (up to message `until`, included), after its own system
    prompt if it has one; interrupted partial answers are left out."""
    system_prompt = store.conversation_settings(conversation_id).system_prompt
    return [{"role": "system", "content": system_prompt}] * bool(system_prompt) + [
        {"role": m.role, "content": m.content}
        for m in store.messages(conversation_id)
        if m.complete and m.content and (until is None or m.id <= until)
    ]


def conversation_settings(
    store: Store, conversation_id: int, settings: GenerationSettings
) -> GenerationSettings:
    """`settings` with the conversation's own temperature, when it has one."""
    temperature = store.conversation_settings(conversation_id).temperature
    return settings if temperature is None else replace(settings, temperature=temperature)


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
    text: str = ""  # the whole answer, a continued answer's earlier text included
    stats: ChatStats | None = None
    _parts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.text:  # continuing a stopped answer: the new text goes after what it has
            self._parts.append(self.text)

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
        messages = self._fitted(history_for_model(self.store, conversation_id, until=user_id))
        settings = conversation_settings(self.store, conversation_id, settings)
        plan, events = self.responder.respond(messages, settings)
        answer_id = start_planned_answer(
            self.store, conversation_id, self.runtime.model_name, settings, plan, source
        )
        return Turn(user_id, answer_id, plan, events, self.store)

    def _fitted(self, messages: list[dict]) -> list[dict]:
        fit = getattr(self.runtime, "fit", None)
        return messages if fit is None else fit(messages)

    def resend(self, user_id: int, settings: GenerationSettings, text: str | None = None) -> Turn:
        """Answer the user's message `user_id` again, as `text` if given (edit and resend; without
        `text`: regenerate its answer). What followed it goes once the new answer row exists, so a
        message id is never handed out twice (the learning loop's records name logs by id)."""
        user = self.store.get_message(user_id)
        if user.role != "user":
            raise UnoError(f"Message {user_id} is an answer; only your own messages can be resent.")
        later = [m.id for m in self.store.messages(user.conversation_id) if m.id > user_id]
        if text is not None:
            self.store.edit_message(user_id, text)
        turn = self.reply(user.conversation_id, user_id, settings)
        self.store.delete_messages(later)
        return turn

    def continue_answer(self, answer_id: int, settings: GenerationSettings) -> Turn:
        """Write more of a stopped answer (the last in its conversation) with the adapter that began it."""
        answer = self.store.get_message(answer_id)
        history = self.store.messages(answer.conversation_id)
        if answer.role != "assistant" or answer.complete or history[-1].id != answer_id:
            raise UnoError(
                f"Answer {answer_id} is not a stopped answer at the end of its conversation; "
                "only that one can be continued."
            )
        messages = self._fitted(history_for_model(self.store, answer.conversation_id, until=answer_id))
        settings = conversation_settings(self.store, answer.conversation_id, settings)
        adapter = (
            answer.adapter if answer.route == "expert" and answer.adapter in self.runtime.adapters() else None
        )
        events = self.runtime.continue_stream(messages, answer.content, settings, adapter=adapter)
        plan = RoutePlan(answer.route or "base", answer.adapter, answer.cluster, answer.route_reason or "")
        user_id = next((m.id for m in reversed(history) if m.role == "user"), 0)
        return Turn(user_id, answer_id, plan, events, self.store, text=answer.content)
