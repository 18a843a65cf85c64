"""The Feedback view (F3): every piece of feedback on a finished answer (what retraining learns from),
newest first, filtered by kind and text.
Enter jumps to the answer in its conversation; c and e edit; x forgets it (asks first).
The store's logs in -> rows; edits go through `Store.set_feedback`, forgetting through `delete_feedback`.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input

from tui.dialogs import ConfirmDialog
from tui.feedback import CommentDialog, CorrectionEditor, correction_result, feedback_line
from tui.learning import TableScreen
from uno_local.store import Feedback, Log

KINDS = ("all", "up", "down", "comment", "correction")


def kinds_of(feedback: Feedback) -> set[str]:
    found = set()
    if feedback.rating == 1:
        found.add("up")
    if feedback.rating == -1:
        found.add("down")
    if feedback.comment:
        found.add("comment")
    if feedback.correction:
        found.add("correction")
    return found


def matches(log: Log, kind: str, text: str) -> bool:
    """Whether a log's feedback is of `kind` and holds every word of `text` (query, answer or feedback)."""
    feedback = log.feedback
    if feedback is None or (kind != "all" and kind not in kinds_of(feedback)):
        return False
    haystack = " ".join([log.query, log.answer, feedback.comment or "", feedback.correction or ""]).lower()
    return all(word in haystack for word in text.lower().split())


def short(text: str, width: int = 48) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class FeedbackScreen(TableScreen):
    """Every piece of feedback; dismisses with the message id to jump to (or None)."""

    TITLE_TEXT = "Feedback you gave (newest first)"
    COLUMNS = ("answer", "feedback", "question")
    HELP = "Enter jump to the answer · k kind · / filter · c comment · e correct · x forget · Esc back"
    BINDINGS = [
        Binding("enter", "jump", "Jump to the answer in its conversation"),
        Binding("k", "next_kind", "Show one kind: all, up, down, comment, correction"),
        Binding("slash", "filter", "Filter by text (every word, in any order)"),
        Binding("c", "edit('comment')", "Edit the comment"),
        Binding("e", "edit('correct')", "Edit the correction"),
        Binding("x,delete", "forget", "Forget this feedback (asks first; the next retrain unlearns it)"),
        Binding("escape", "back", "Back to the chat"),
    ]

    def __init__(self, core) -> None:
        super().__init__(core)
        self.kind = "all"
        self.logs: dict[str, Log] = {}

    def compose_top(self) -> ComposeResult:
        yield Input(placeholder="Filter: words in the question, answer or feedback (/)", id="feedback-filter")

    def rows(self) -> list[tuple[str, tuple]]:
        text = self.query_one("#feedback-filter", Input).value
        logs = [log for log in self.core.store.logs(with_feedback_only=True) if matches(log, self.kind, text)]
        logs.sort(key=lambda log: log.feedback.updated_at, reverse=True)
        self.logs = {str(log.message_id): log for log in logs}
        return [
            (
                str(log.message_id),
                (f"#{log.message_id}", short(feedback_line(log.feedback), 40), short(log.query)),
            )
            for log in logs
        ]

    def detail(self, key: str) -> str:
        log = self.logs[key]
        feedback = log.feedback
        lines = [f"Answer #{log.message_id} in conversation {log.conversation_id}", f"Question: {log.query}"]
        lines.append(f"Answer: {short(log.answer, 400)}")
        lines.append(f"Feedback: {feedback_line(feedback)}")
        if feedback.correction:
            lines.append(f"Correction: {feedback.correction}")
        return "\n".join(lines)

    def empty_text(self) -> str:
        if self.kind != "all" or self.query_one("#feedback-filter", Input).value:
            return "No feedback matches; k and / change the filter."
        return (
            "No feedback on a finished answer yet: select an answer in the chat (ctrl+↑), press Enter, "
            "then + - c or e. (Feedback on a stopped, incomplete answer is kept but not learned from.)"
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        self.reload()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def action_filter(self) -> None:
        self.query_one("#feedback-filter", Input).focus()

    def action_next_kind(self) -> None:
        self.kind = KINDS[(KINDS.index(self.kind) + 1) % len(KINDS)]
        self.query_one(".view-title").update(f"{self.TITLE_TEXT} · kind: {self.kind}")
        self.reload()

    def chosen(self) -> None:
        self.action_jump()

    def action_jump(self) -> None:
        if self.current_key is not None:
            self.dismiss(int(self.current_key))

    def action_back(self) -> None:
        if self.focused is self.query_one("#feedback-filter", Input):
            self.table.focus()
        else:
            self.dismiss(None)

    def action_edit(self, what: str) -> None:
        key = self.current_key
        if key is None:
            return
        log = self.logs[key]
        message_id = log.message_id

        def saved(text: str | None) -> None:
            if text is None:
                return
            if what == "comment":
                self.guard(self.core.store.set_feedback, message_id, comment=text)
            else:
                change = correction_result(text, log.answer)
                self.guard(self.core.store.set_feedback, message_id, correction=change)
            self.reload(keep=key)

        if what == "comment":
            self.app.push_screen(CommentDialog(log.feedback.comment or ""), saved)
        else:
            self.app.push_screen(CorrectionEditor(log.feedback.correction or log.answer), saved)

    def action_forget(self) -> None:
        key = self.current_key
        if key is None:
            return
        message_id = int(key)

        def answered(yes: bool | None) -> None:
            if yes:
                self.guard(self.core.store.delete_feedback, message_id)
                self.reload()
                self.notify(f"Forgot the feedback on answer #{message_id}.", title="uno")

        question = (
            f"Forget the feedback on answer #{message_id}? The clusters that learned from it are "
            "retrained without it at the next retrain."
        )
        self.app.push_screen(ConfirmDialog(question), answered)
