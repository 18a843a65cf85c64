"""Which stored conversation an API request continues, and starting its routed answer.

OpenAI clients resend the whole history with every request. A request continues a conversation when
the conversation's stored messages are exactly the request's messages before the final user message
(or when it names one in the `X-Uno-Conversation` header); otherwise its earlier messages are stored
as context of a new conversation. Either way the answer goes through `ChatService`, the UNO router,
exactly like a chat turn in the TUI.
"""

from __future__ import annotations

from uno_local.chat import ChatService, Turn, history_for_model
from uno_local.errors import RequestError, UnoError
from uno_local.runtime import GenerationSettings
from uno_local.store import Store

SOURCE = "serve"


def find_conversation(store: Store, history: list[dict]) -> int | None:
    """The newest conversation whose messages are exactly `history` (None for a first turn)."""
    answers = [m for m in history if m["role"] == "assistant"]
    if not answers:
        return None
    for conversation_id in store.conversations_answered_with(answers[-1]["content"]):
        if history_for_model(store, conversation_id) == history:
            return conversation_id
    return None


def title_for(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "API chat"
    return line[:60]


def start_turn(
    chat: ChatService,
    messages: list[dict],
    settings: GenerationSettings,
    conversation_header: str | None = None,
) -> tuple[int, Turn]:
    """Store the user's message in its conversation and start the routed answer: (conversation id, turn)."""
    store = chat.store
    history, query = messages[:-1], messages[-1]["content"]
    if conversation_header is not None:
        if not conversation_header.strip().isdigit():
            raise RequestError("X-Uno-Conversation must be a conversation id (a number).")
        conversation_id = int(conversation_header)
        try:
            store.get_conversation(conversation_id)
        except UnoError as exc:
            raise RequestError(str(exc), status=404, code="conversation_not_found") from exc
    else:
        conversation_id = find_conversation(store, history)
        if conversation_id is None:
            conversation_id = store.new_conversation(title_for(query))
            for message in history:
                store.add_message(conversation_id, message["role"], message["content"], source="context")
    return conversation_id, chat.send(conversation_id, query, settings, source=SOURCE)
