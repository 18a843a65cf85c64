"""Small modal dialogs: rename (returns the new title), confirm (returns a bool), and the base of the
one-key action menus on a message (returns the chosen action)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class RenameDialog(ModalScreen[str | None]):
    """Asks for a conversation's new title, prefilled with the current one."""

    BINDINGS = [
        Binding("enter", "save", "Save the new title"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, title: str, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.current = title
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Rename conversation", classes="dialog-title")
            field = Input(self.current, id="rename-input")
            field.cursor_blink = self.cursor_blink
            yield field
            yield Label("Enter saves · Esc cancels", classes="dialog-help")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        self.dismiss(self.query_one(Input).value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; only y confirms."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes, go ahead"),
        Binding("n,escape", "answer(False)", "No, keep it"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title", markup=False)
            yield Label("y: yes · n or Esc: no", classes="dialog-help")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ActionsMenu(ModalScreen[str | None]):
    """A menu of one-key actions on message #`message_id`: its bindings (`choose('kind')`) listed
    under `heading`, Esc last. Returns the chosen kind, or None."""

    HEADING = "Message"

    def __init__(self, message_id: int) -> None:
        super().__init__()
        self.message_id = message_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog actions-menu"):
            yield Label(f"{self.HEADING} #{self.message_id}", classes="dialog-title")
            for binding in self.BINDINGS[:-1]:
                key = {"plus": "+", "minus": "-"}.get(binding.key, binding.key)
                yield Label(f"{key}  {binding.description}", markup=False)
            yield Label("Esc: back", classes="dialog-help")

    def action_choose(self, kind: str | None) -> None:
        self.dismiss(kind)
