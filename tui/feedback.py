"""Feedback on an answer: the inline summary line, the rating toggle, the answer's actions menu, the comment
dialog and the correction editor (prefilled with the answer). Dialogs return the new text (the menu: the
chosen action), or None when cancelled.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, TextArea

from tui.dialogs import ActionsMenu
from uno_local.store import Feedback


def toggled_rating(current: int | None, pressed: int) -> int | None:
    """Pressing the rating an answer already has removes it; otherwise it becomes the rating."""
    return None if current == pressed else pressed


def feedback_line(feedback: Feedback | None) -> str:
    """One line shown under an answer, e.g. '👍  comment: too long  ✎ corrected'; '' when none.
    The comment is whole: the widget wraps it to the space there is."""
    if feedback is None or feedback.is_empty:
        return ""
    parts = []
    if feedback.rating == 1:
        parts.append("👍")
    elif feedback.rating == -1:
        parts.append("👎")
    if feedback.comment:
        parts.append(f"comment: {' '.join(feedback.comment.split())}")
    if feedback.correction:
        parts.append("✎ corrected")
    return "  ".join(parts)


def correction_result(edited: str, answer: str) -> str | None:
    """The correction to store: None when the text is the answer itself (nothing was corrected)."""
    return None if edited.strip() == answer.strip() or not edited.strip() else edited


class AnswerActions(ActionsMenu):
    """What can be done with the selected answer, one key each; returns the chosen action."""

    HEADING = "Answer"
    BINDINGS = [
        Binding("plus", "choose('up')", "Thumbs up (press again to take it back)"),
        Binding("minus", "choose('down')", "Thumbs down (press again to take it back)"),
        Binding("c", "choose('comment')", "Comment on the answer (edit it the same way)"),
        Binding("e", "choose('correct')", "Correct the answer in an editor"),
        Binding("x", "choose('clear')", "Remove all feedback from the answer (asks first)"),
        Binding("w", "choose('why')", "Why this answer: its route, cluster, adapter and rules"),
        Binding("y", "choose('copy')", "Copy the answer"),
        Binding("b", "choose('code')", "Copy the answer's code blocks"),
        Binding("r", "choose('regenerate')", "Regenerate: a new answer to the same question"),
        Binding("m", "choose('continue')", "More: continue the answer where it was stopped"),
        Binding("escape", "choose(None)", "Back"),
    ]


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


class CorrectionArea(TextArea):
    """The correction's text area: ctrl+a selects everything (to type over the old answer) and ctrl+k
    deletes to the end of the line as written, not of the wrapped screen line."""

    BINDINGS = [
        Binding("ctrl+a", "select_all", "Select all the text (typing replaces it)"),
        Binding("ctrl+k", "delete_line_end", "Delete to the end of the line"),
    ]

    def action_delete_line_end(self) -> None:
        row, column = self.cursor_location
        end = (row, len(self.document.get_line(row)))
        if column == end[1] and row + 1 < self.document.line_count:
            end = (row + 1, 0)  # at the end already: join the next line, as in a shell
        self.delete(self.cursor_location, end)


class CorrectionEditor(ModalScreen[str | None]):
    """A multi-line editor holding the answer (or the earlier correction) to rewrite as it should be."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save the correction"),
        Binding("escape", "cancel", "Cancel the correction"),
    ]
    HEADING = "Correct the answer: write it as it should have been"
    HELP = "ctrl+s saves · Esc cancels · ctrl+a selects all · saving it unchanged stores no correction"

    def __init__(self, text: str, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.text = text
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="correction-dialog"):
            yield Label(self.HEADING, classes="dialog-title", markup=False)
            editor = CorrectionArea(
                self.text, id="correction-editor", soft_wrap=True, show_line_numbers=False
            )
            editor.cursor_blink = self.cursor_blink
            yield editor
            yield Label(self.HELP, classes="dialog-help", markup=False)

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
