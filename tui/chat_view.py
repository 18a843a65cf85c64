"""The chat view: a conversation's messages (answers rendered as markdown, streamed while they are
written), each answer with its route and feedback on small muted lines, and a keyboard selection.
Stored `Message` records in -> widgets out; Enter on a selected message posts `FeedbackRequested("menu")`.
Only keys that type nothing act here: the app sends printable keys to the prompt.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from tui.feedback import feedback_line
from tui.messages import FeedbackRequested, SelectionChanged
from uno_local.store import Message

EMPTY_TEXT = "No messages yet. Type below and press Enter to ask; F1 lists every key."


def route_name(message: Message) -> str:
    """Which path answered: base model, an Expert adapter and its version, or the Reflective path."""
    if message.route == "expert":
        route = f"expert adapter {message.adapter or '?'}"
    elif message.route == "reflective":
        route = "reflective (critique and revise)"
    else:
        route = "base model"
    return route


def route_text(message: Message, *, streaming: bool = False) -> str:
    """The muted line under an answer: which path answered it, and whether it is unfinished."""
    route = route_name(message)
    if streaming:
        return f"{route} · writing…"
    return route if message.complete else f"{route} · stopped, incomplete"


def header_text(message: Message) -> str:
    """'uno · #42': who wrote it, and the id that `uno explain` and the other commands take."""
    who = "uno" if message.role == "assistant" else "you"
    return f"{who} · #{message.id}" if message.id else who


class MessageWidget(Vertical):
    """One message: a header, the text, and for answers the route and feedback lines."""

    def __init__(self, message: Message, *, streaming: bool = False) -> None:
        role = "assistant" if message.role == "assistant" else "user"
        super().__init__(classes=f"message {role}", id=f"msg-{message.id}" if message.id else None)
        self.message = message
        self.streaming = streaming
        self.set_class(role == "assistant" and bool(feedback_line(message.feedback)), "-has-feedback")

    @property
    def is_answer(self) -> bool:
        return self.message.role == "assistant"

    def compose(self) -> ComposeResult:
        yield Static(header_text(self.message), classes="message-header", markup=False)
        if self.is_answer:
            yield Markdown(self.message.content, classes="message-body")
            yield Static(
                route_text(self.message, streaming=self.streaming), classes="message-route", markup=False
            )
            yield Static(feedback_line(self.message.feedback), classes="message-feedback", markup=False)
            yield Static("✎ your correction (what it learns from):", classes="correction-title")
            yield Markdown(self.correction, classes="message-correction")
        else:
            yield Static(self.message.content, classes="message-body", markup=False)

    @property
    def correction(self) -> str:
        feedback = self.message.feedback
        return (feedback.correction or "") if feedback else ""

    def on_mount(self) -> None:
        self.set_class(bool(self.correction), "-corrected")

    async def refresh_meta(self, message: Message) -> None:
        """Show the stored state of this message (route, completeness, feedback, correction)."""
        self.message = message
        self.streaming = False
        if self.is_answer:
            self.query_one(".message-header", Static).update(header_text(message))
            self.query_one(".message-route", Static).update(route_text(message))
            line = feedback_line(message.feedback)
            self.query_one(".message-feedback", Static).update(line)
            self.set_class(bool(line), "-has-feedback")
            await self.query_one(".message-correction", Markdown).update(self.correction)
            self.set_class(bool(self.correction), "-corrected")


class ChatView(VerticalScroll, can_focus=True):
    """The messages of the open conversation; focus it to select a message and give feedback."""

    # Only keys that type nothing: the app sends a printable key to the prompt (UnoApp.on_event).
    BINDINGS = [
        Binding("up", "select(-1)", "Select the previous message"),
        Binding("down", "select(1)", "Select the next message"),
        Binding("home", "select_edge(0)", "Select the first message"),
        Binding("end", "select_edge(-1)", "Select the last message"),
        Binding(
            "enter", "feedback('menu')", "Actions on the selected message: rate, correct, regenerate, edit…"
        ),
    ]

    selected: reactive[int | None] = reactive(None)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stream: MarkdownStream | None = None
        self._stream_id: int | None = None
        self._follow = True

    def compose(self) -> ComposeResult:
        yield Static(EMPTY_TEXT, id="chat-empty")

    @property
    def message_widgets(self) -> list[MessageWidget]:
        return list(self.query(MessageWidget))

    @property
    def selected_message(self) -> Message | None:
        widgets = self.message_widgets
        if self.selected is None or not 0 <= self.selected < len(widgets):
            return None
        return widgets[self.selected].message

    @property
    def target_answer(self) -> Message | None:
        """What an answer action acts on: the selected answer, else the newest one shown."""
        message = self.selected_message
        if message is not None and message.role == "assistant":
            return message
        answers = [w.message for w in self.message_widgets if w.is_answer and w.message.id]
        return answers[-1] if answers else None

    async def show(self, messages: list[Message], live: tuple[int, str] | None = None) -> None:
        """Replace the view with `messages`; `live` (answer id, text so far) resumes a streaming answer."""
        await self._end_stream()
        await self.remove_children(MessageWidget)
        self.selected = None
        widgets = []
        for message in messages:
            streaming = live is not None and message.id == live[0]
            if streaming:
                message.content = live[1]
            widgets.append(MessageWidget(message, streaming=streaming))
        await self.mount_all(widgets)
        self.query_one("#chat-empty").display = not widgets
        if live is not None and self.query(f"#msg-{live[0]}"):
            self._begin_stream(live[0])
        self.follow()

    async def add_message(self, message: Message, *, streaming: bool = False) -> None:
        """Append one message (the user's, or an answer about to stream)."""
        self.query_one("#chat-empty").display = False
        # The view may have been rebuilt from the store meanwhile and already hold this message.
        existing = self.query(f"#msg-{message.id}").results(MessageWidget)
        widget = next(existing, None)
        if widget is None:
            await self.mount(MessageWidget(message, streaming=streaming))
        elif streaming:  # no delta has been shown yet: start the answer empty
            await widget.query_one(Markdown).update("")
        if streaming:
            self._begin_stream(message.id)
        self.scroll_end(animate=False)

    async def add_pending(self, text: str) -> None:
        """Show the user's text at once, before the store has given it an id."""
        pending = Message(0, "", 0, "user", text, "")
        self.query_one("#chat-empty").display = False
        await self.mount(MessageWidget(pending))
        self.query(MessageWidget).last().add_class("-pending")
        self.scroll_end(animate=False)

    async def drop_pending(self) -> None:
        await self.remove_children(".-pending")
        self.query_one("#chat-empty").display = not self.message_widgets

    def follow(self) -> None:
        """Keep the newest message in view, also while markdown is laid out and after a resize."""
        self._follow = True
        self.anchor()
        self.call_after_refresh(self.scroll_end, animate=False)

    def _begin_stream(self, answer_id: int) -> None:
        widget = self.query_one(f"#msg-{answer_id}", MessageWidget)
        self._stream = Markdown.get_stream(widget.query_one(Markdown))
        self._stream_id = answer_id
        self.follow()

    async def append(self, answer_id: int, text: str) -> None:
        """Stream a delta into the answer being written, if it is on screen."""
        if self._stream is not None and self._stream_id == answer_id:
            await self._stream.write(text)
            if self._follow:  # keep the growing answer in view until the user moves the selection
                self.scroll_end(animate=False)

    async def finish(self, message: Message) -> None:
        """The answer ended: flush the stream and show its stored text, route and feedback."""
        if self._stream_id != message.id:
            return
        await self._end_stream()
        widget = self.query_one(f"#msg-{message.id}", MessageWidget)
        # The stored text is the source of truth; re-render it so the view matches the database.
        await widget.query_one(Markdown).update(message.content)
        await widget.refresh_meta(message)

    async def _end_stream(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
        self._stream = None
        self._stream_id = None

    async def update_message(self, message: Message) -> None:
        """Refresh one message's route and feedback lines after a change in the store."""
        for widget in self.query(f"#msg-{message.id}").results(MessageWidget):
            await widget.refresh_meta(message)
            if widget.has_class("-selected"):  # it grew: keep its new lines (feedback, correction) in view
                self.call_after_refresh(widget.scroll_visible, animate=False)

    def select_last_answer(self) -> None:
        widgets = self.message_widgets
        answers = [i for i, w in enumerate(widgets) if w.is_answer]
        self.selected = answers[-1] if answers else (len(widgets) - 1 if widgets else None)

    def on_resize(self, event: events.Resize) -> None:
        # A resize re-wraps every message; keep the newest answer in view unless a message is selected.
        if self._follow:
            self.call_after_refresh(self.scroll_end, animate=False)

    def action_select_edge(self, index: int) -> None:
        widgets = self.message_widgets
        if widgets:
            self.selected = index % len(widgets)

    def select_message(self, message_id: int) -> bool:
        """Select (and scroll to) the message with this id; False when it is not shown."""
        for index, widget in enumerate(self.message_widgets):
            if widget.message.id == message_id:
                self.selected = index
                return True
        return False

    def action_select(self, step: int) -> None:
        widgets = self.message_widgets
        if not widgets:
            return
        if self.selected is None:
            self.selected = len(widgets) - 1 if step < 0 else 0
        else:
            self.selected = max(0, min(len(widgets) - 1, self.selected + step))

    def watch_selected(self, old: int | None, new: int | None) -> None:
        widgets = self.message_widgets
        for index, widget in enumerate(widgets):
            widget.set_class(index == new, "-selected")
        if new is not None and 0 <= new < len(widgets):
            self._follow = False
            self.anchor(False)
            widgets[new].scroll_visible(animate=False)
        message = self.selected_message
        self.post_message(SelectionChanged(message.id if message else None))

    def action_feedback(self, kind: str) -> None:
        message = self.selected_message
        if message is None or not message.id:
            self.notify("Select a message first (up/down here, or ctrl+up / ctrl+down).", severity="warning")
            return
        self.post_message(FeedbackRequested(message.id, kind))
