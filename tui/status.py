"""The status bar: model name, tokens/s and route of the selected (or last) answer, and what is running."""

from __future__ import annotations

from textual.widgets import Static

from tui.chat_view import route_text
from uno_local.runtime import ChatStats
from uno_local.store import Message


def tokens_per_s(message: Message | None) -> float | None:
    """Generation speed of a stored answer, from its token count and timings."""
    if message is None or message.duration_ms is None or not message.completion_tokens:
        return None
    stats = ChatStats(
        prompt_tokens=message.prompt_tokens or 0,
        completion_tokens=message.completion_tokens,
        ttft_ms=message.ttft_ms or 0.0,
        duration_ms=message.duration_ms,
    )
    return stats.tokens_per_s or None


def status_text(model: str, answer: Message | None, activity: str = "") -> str:
    """' model │ 108.2 tok/s │ route │ activity │ F1 keys' (dashes where nothing is known yet)."""
    speed = tokens_per_s(answer)
    parts = [
        model,
        f"{speed:.1f} tok/s" if speed else "– tok/s",
        route_text(answer) if answer is not None else "no answer yet",
    ]
    if activity:
        parts.append(activity)
    parts.append("F1 keys")
    return " │ ".join(parts)


class StatusBar(Static):
    """One line at the bottom of the screen."""

    def show(self, model: str, answer: Message | None, activity: str = "") -> None:
        self.update(status_text(model, answer, activity))
