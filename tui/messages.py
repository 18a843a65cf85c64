"""Textual messages the widgets and the answer worker post: UI event -> handler in `tui.app`.

Widgets never touch the store; they say what the user asked for and the app does it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from uno_local.runtime import ChatStats


@dataclass
class PromptSubmitted(Message):
    """The user pressed Enter in the prompt."""

    text: str


@dataclass
class AnswerStarted(Message):
    """The user's message is stored and the answer row exists; deltas follow."""

    conversation_id: int
    user_id: int
    answer_id: int
    rebuilt: bool = False  # the conversation changed beyond the new answer: show it again from the store


@dataclass
class AnswerDelta(Message):
    """A piece of streamed answer text."""

    answer_id: int
    text: str


@dataclass
class AnswerFinished(Message):
    """The answer ended (complete, stopped by the user, or cut short by an error)."""

    conversation_id: int
    answer_id: int
    stopped: bool
    stats: ChatStats | None


@dataclass
class AnswerFailed(Message):
    """The answer could not start or broke off with an expected error (shown as a toast)."""

    conversation_id: int
    error: str


@dataclass
class FeedbackRequested(Message):
    """An action on a message: menu or copy; on an answer also up, down, comment, correct, clear, why,
    code, regenerate or continue; on your own message also resend."""

    message_id: int
    kind: str


@dataclass
class SelectionChanged(Message):
    """The selected message in the chat view changed (None: no selection)."""

    message_id: int | None


@dataclass
class ConversationChosen(Message):
    """Open this conversation (and select `message_id` in it: a search hit or a feedback row)."""

    conversation_id: int
    message_id: int | None = None


@dataclass
class ConversationAction(Message):
    """A key on a conversation in the list: kind is new, rename or delete."""

    conversation_id: int | None
    kind: str


@dataclass
class SearchChanged(Message):
    """The search text in the sidebar changed."""

    query: str


@dataclass
class RetrainProgress(Message):
    """A line of progress from the background `uno retrain` process."""

    stage: str
    done: int
    total: int
    text: str


@dataclass
class RetrainFinished(Message):
    """The background retrain ended: a summary sentence, and whether it failed."""

    summary: str
    failed: bool
