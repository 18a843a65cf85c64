"""The status bar: model name, tokens/s and route of the selected (or last) answer, and what is running.
It fits its width: at 80 columns the least useful parts go first, so what is left is never cut."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.widgets import Static

from tui.chat_view import route_name, route_text
from uno_local.runtime import ChatStats
from uno_local.store import Message

SEPARATOR = " │ "


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


@dataclass
class Status:
    """What the bar shows; `live_speed` is set while an answer streams (its tokens/s so far)."""

    model: str
    answer: Message | None = None
    activity: str = ""
    streaming: bool = False
    live_speed: float | None = None


def status_text(status: Status, width: int | None = None) -> str:
    """' model │ 108.2 tok/s │ route │ activity │ F1 keys', shortened to `width` by dropping the least
    useful parts first (the key hint, then the model's name, then the route)."""
    answer = status.answer
    speed = status.live_speed if status.streaming else tokens_per_s(answer)
    if answer is None:
        route = "no answer yet"
    elif status.streaming:
        route = route_name(answer)  # the activity says it is being written
    else:
        route = route_text(answer)
    parts = {
        "model": status.model,
        "speed": f"{speed:.1f} tok/s" if speed else "– tok/s",
        "route": route,
        "activity": status.activity,
        "keys": "F1 keys",
    }
    order = ["model", "speed", "route", "activity", "keys"]
    for drop in ([], ["keys"], ["keys", "model"], ["keys", "model", "route"]):
        text = SEPARATOR.join(parts[k] for k in order if parts[k] and k not in drop)
        if width is None or len(text) <= width:
            return text
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class StatusBar(Static):
    """One line at the bottom of the screen."""

    status: Status | None = None

    def show(self, status: Status) -> None:
        self.status = status
        self.update(status_text(status, self.content_size.width or None))

    def on_resize(self, event: events.Resize) -> None:
        if self.status is not None:
            self.update(status_text(self.status, self.content_size.width or None))
