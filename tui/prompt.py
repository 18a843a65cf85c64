"""The prompt: a multi-line TextArea where Enter sends and ctrl+j / alt+enter add a line, with a
per-session input history on up/down at the first/last line. Text -> `PromptSubmitted`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import events
from textual.binding import Binding
from textual.widgets import TextArea

from tui.messages import PromptSubmitted


@dataclass
class InputHistory:
    """Sent texts of this session; `previous`/`following` walk them and keep the unsent draft."""

    entries: list[str] = field(default_factory=list)
    position: int = 0  # == len(entries) means "at the draft"
    draft: str = ""

    def add(self, text: str) -> None:
        if not self.entries or self.entries[-1] != text:
            self.entries.append(text)
        self.position = len(self.entries)
        self.draft = ""

    def previous(self, current: str) -> str | None:
        """The older entry, or None at the oldest; the first step back remembers `current` as the draft."""
        if self.position == 0:
            return None
        if self.position == len(self.entries):
            self.draft = current
        self.position -= 1
        return self.entries[self.position]

    def following(self) -> str | None:
        """The newer entry (the draft after the newest), or None when already at the draft."""
        if self.position >= len(self.entries):
            return None
        self.position += 1
        return self.draft if self.position == len(self.entries) else self.entries[self.position]


class PromptInput(TextArea):
    """Multi-line input; Enter submits, the history shares its keys with cursor movement."""

    BINDINGS = [
        Binding("enter", "submit", "Send the message"),
        Binding("ctrl+j,alt+enter,shift+enter", "newline", "Insert a new line"),
        Binding("up", "cursor_up", "Line up; on the first line: previous input (history)"),
        Binding("down", "cursor_down", "Line down; on the last line: next input (history)"),
    ]

    def __init__(self, history: InputHistory, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, **kwargs)
        self.input_history = history

    async def _on_key(self, event: events.Key) -> None:
        # TextArea inserts a newline on Enter before bindings are consulted: take Enter first.
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.action_submit()

    def action_submit(self) -> None:
        if self.text.strip():
            self.post_message(PromptSubmitted(self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_at_first_line:
            entry = self.input_history.previous(self.text)
            if entry is not None:
                self._show(entry)
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if not select and self.cursor_at_last_line:
            entry = self.input_history.following()
            if entry is not None:
                self._show(entry)
            return
        super().action_cursor_down(select)

    def _show(self, text: str) -> None:
        self.text = text
        self.move_cursor(self.document.end)
