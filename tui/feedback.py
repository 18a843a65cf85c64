"""Feedback on an answer: the inline summary line, the rating toggle, the comment dialog and the
correction editor (prefilled with the answer). Dialogs return the new text, or None when cancelled.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, TextArea

from uno_local.store import Feedback

COMMENT_PREVIEW = 60


def toggled_rating(current: int | None, pressed: int) -> int | None:
    """Pressing the rating an answer already has removes it; otherwise it becomes the rating."""
    return None if current == pressed else pressed


def feedback_line(feedback: Feedback | None) -> str:
    """One line shown under an answer, e.g. '👍  comment: too long  ✎ corrected'; '' when none."""
    if feedback is None or feedback.is_empty:
        return ""
    parts = []
    if feedback.rating == 1:
        parts.append("👍")
    elif feedback.rating == -1:
        parts.append("👎")
    if feedback.comment:
        comment = " ".join(feedback.comment.split())
        if len(comment) > COMMENT_PREVIEW:
            comment = comment[: COMMENT_PREVIEW - 1] + "…"
        parts.append(f"comment: {comment}")
    if feedback.correction:
        parts.append("✎ corrected")
    return "  ".join(parts)


def correction_result(edited: str, answer: str) -> str | None:
    """The correction to store: None when the text is the answer itself (nothing was corrected)."""
    return None if edited.strip() == answer.strip() or not edited.strip() else edited


class CommentDialog(ModalScreen[str | None]):
    """A one-line comment on an answer; saving an empty comment removes it."""

    BINDINGS = [
        Binding("enter,ctrl+s", "save", "Save the comment (empty removes it)"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, initial: str = "", *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.initial = initial
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Comment on this answer", classes="dialog-title")
            field = Input(self.initial, placeholder="What was good or wrong about it?", id="comment-input")
            field.cursor_blink = self.cursor_blink
            yield field
            yield Label("Enter saves · Esc cancels · an empty comment removes it", classes="dialog-help")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        self.dismiss(self.query_one("#comment-input", Input).value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class CorrectionEditor(ModalScreen[str | None]):
    """A multi-line editor holding the answer (or the earlier correction) to rewrite as it should be."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save the correction"),
        Binding("escape", "cancel", "Cancel the correction"),
    ]

    def __init__(self, text: str, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.text = text
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="correction-dialog"):
            yield Label("Correct the answer: write it as it should have been", classes="dialog-title")
            editor = TextArea(self.text, id="correction-editor", soft_wrap=True, show_line_numbers=False)
            editor.cursor_blink = self.cursor_blink
            yield editor
            yield Label(
                "Ctrl+S saves · Esc cancels · saving it unchanged stores no correction", classes="dialog-help"
            )

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
