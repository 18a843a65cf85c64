"""One streamed answer, run in a worker thread: (conversation, text) -> Textual messages for the UI.

`stream_answer` starts a core `Turn` (a new message, a resent one, or more of a stopped answer) and posts `AnswerStarted`, one `AnswerDelta` per piece
of text, then `AnswerFinished` (or `AnswerFailed`). Stopping closes the `Turn`, whose finally-block
stores the partial answer marked incomplete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from textual.message import Message

from tui.messages import AnswerDelta, AnswerFailed, AnswerFinished, AnswerStarted
from uno_local.chat import Turn
from uno_local.errors import UnoError


@dataclass
class LiveAnswer:
    """The answer being written: where it goes and the text shown so far (to rebuild the view)."""

    conversation_id: int
    answer_id: int | None = None
    parts: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # when each piece arrived (monotonic)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str, at: float | None = None) -> None:
        self.parts.append(text)
        self.times.append(time.monotonic() if at is None else at)

    def tokens_per_s(self) -> float | None:
        """Speed so far: llama.cpp streams one token per piece; the first piece starts the clock."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return None
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def stream_answer(
    start: Callable[[], Turn],
    conversation_id: int,
    post: Callable[[Message], object],
    should_stop: Callable[[], bool],
    *,
    rebuilt: bool = False,
) -> None:
    """Start the turn (`start()`: send, resend or continue), stream the answer to `post`, and stop
    early once `should_stop()` is true. `rebuilt`: the conversation changed beyond the new answer
    (an edit, a regenerated or continued answer), so the view reloads it."""
    try:
        turn = start()
    except UnoError as exc:
        post(AnswerFailed(conversation_id, str(exc)))
        return
    post(AnswerStarted(conversation_id, turn.user_id, turn.answer_id, rebuilt))
    deltas = iter(turn)
    stopped, error = False, None
    try:
        for delta in deltas:
            post(AnswerDelta(turn.answer_id, delta))
            if should_stop():
                stopped = True
                break
    except UnoError as exc:
        error = str(exc)
    finally:
        # Closing the Turn runs its finally-block: the partial answer is stored as incomplete and
        # the runtime's stream is closed, releasing the model for the next answer.
        deltas.close()
    post(AnswerFinished(conversation_id, turn.answer_id, stopped, turn.stats))
    if error:
        post(AnswerFailed(conversation_id, error))
