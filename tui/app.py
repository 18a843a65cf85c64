"""The Textual app: wires the sidebar, chat view, prompt and status bar to the core `App`.

User keys -> store changes and a streamed answer (a thread worker iterates the `Turn`) -> widgets.
Every expected failure (`UnoError`) becomes an error toast; the database stays the source of truth.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from textual import work
from textual.app import App as TextualApp
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input
from textual.worker import get_current_worker

from tui.answer import LiveAnswer, stream_answer
from tui.chat_view import ChatView
from tui.dialogs import ConfirmDialog, RenameDialog
from tui.feedback import CommentDialog, CorrectionEditor, correction_result, toggled_rating
from tui.help import HelpScreen
from tui.messages import (
    AnswerDelta,
    AnswerFailed,
    AnswerFinished,
    AnswerStarted,
    ConversationAction,
    ConversationChosen,
    FeedbackRequested,
    PromptSubmitted,
    RetrainFinished,
    RetrainProgress,
    SearchChanged,
    SelectionChanged,
)
from tui.prompt import InputHistory, PromptInput
from tui.retrain import run_retrain
from tui.sidebar import ConversationList, Sidebar
from tui.status import StatusBar
from uno_local.app import App
from uno_local.errors import UnoError
from uno_local.store import Message

T = TypeVar("T")
TITLE_LENGTH = 40
# Actions that stay available while a dialog is open; the rest would act on the screen beneath it.
MODAL_SAFE_ACTIONS = {"quit", "help"}


def title_from(text: str) -> str:
    """A conversation title from its first message: the first line, shortened."""
    line = " ".join(text.strip().split("\n", 1)[0].split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


def model_label(core: App) -> str:
    """The model's file name for the status bar, without loading it."""
    try:
        return core.model_path.name.removesuffix(".gguf")
    except UnoError:
        return "no model"


class UnoApp(TextualApp[None]):
    """uno-local's chat window."""

    CSS_PATH = Path(__file__).with_name("uno.tcss")  # absolute: subclasses live elsewhere
    TITLE = "uno"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("f1,question_mark", "help", "Show every key (this screen)"),
        Binding("ctrl+n", "new_conversation", "New conversation"),
        Binding("ctrl+f", "search", "Search conversations (titles and messages)"),
        Binding("ctrl+o", "focus_list", "Go to the conversation list"),
        Binding("f2", "rename", "Rename the open conversation"),
        Binding("ctrl+up", "select_message(-1)", "Select the previous message"),
        Binding("ctrl+down", "select_message(1)", "Select the next message"),
        Binding("escape", "stop", "Stop the answer being written (else: back to the prompt)"),
        Binding("ctrl+r", "retrain", "Retrain now: learn from your feedback in the background"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, core: App, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.core = core
        self.cursor_blink = cursor_blink
        self.conversation_id: int | None = None
        self.history = InputHistory()
        self.search = ""
        self.model_label = model_label(core)
        self.live: LiveAnswer | None = None
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self.retraining = ""  # the background retrain's latest progress line, "" when none runs
        self._retrain_proc = None

    # layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar(id="sidebar", cursor_blink=self.cursor_blink)
            with Vertical(id="chat-pane"):
                yield ChatView(id="chat")
                prompt = PromptInput(self.history, id="prompt", placeholder="Ask something… (Enter sends)")
                prompt.cursor_blink = self.cursor_blink
                yield prompt
        yield StatusBar("", id="status", markup=False)

    async def on_mount(self) -> None:
        conversations = self.guard(self.core.store.list_conversations) or []
        if conversations:
            await self.open_conversation(conversations[0].id)
        else:
            await self.refresh_list()
            self.refresh_status()
        self.query_one(PromptInput).focus()

    def on_unmount(self) -> None:
        # Stop a running answer and let it write its partial row before the store closes.
        self._stop.set()
        self._idle.wait(timeout=30)
        if self._retrain_proc is not None and self._retrain_proc.poll() is None:
            self._retrain_proc.terminate()  # the retrain resumes from its finished stages next time

    @property
    def chat_view(self) -> ChatView:
        return self.query_one(ChatView)

    def guard(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run a store/runtime call; an expected failure becomes an error toast and None."""
        try:
            return action(*args, **kwargs)
        except UnoError as exc:
            self.notify(str(exc), severity="error", title="uno")
            return None
        except Exception as exc:  # unforeseen: still one sentence, never a traceback on screen
            self.notify(
                f"Unexpected {type(exc).__name__}: {exc}; please report it.", severity="error", title="uno"
            )
            return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return len(self.screen_stack) == 1 or action in MODAL_SAFE_ACTIONS

    # conversations
    async def refresh_list(self) -> None:
        conversations = self.guard(self.core.store.list_conversations, search=self.search or None) or []
        await self.query_one(Sidebar).show(conversations, self.conversation_id)

    async def open_conversation(self, conversation_id: int | None) -> None:
        messages: list[Message] = []
        if conversation_id is not None:
            found = self.guard(self.core.store.messages, conversation_id)
            if found is None:
                conversation_id = None
            else:
                messages = found
        self.conversation_id = conversation_id
        live = self.live
        resume = None
        if live and live.answer_id and live.conversation_id == conversation_id:
            resume = (live.answer_id, live.text)
        await self.chat_view.show(messages, live=resume)
        await self.refresh_list()
        self.refresh_status()

    async def on_conversation_chosen(self, event: ConversationChosen) -> None:
        await self.open_conversation(event.conversation_id)
        self.query_one(PromptInput).focus()

    async def on_search_changed(self, event: SearchChanged) -> None:
        self.search = event.query
        await self.refresh_list()

    async def on_conversation_action(self, event: ConversationAction) -> None:
        if event.kind == "new":
            await self.action_new_conversation()
        elif event.kind == "rename" and event.conversation_id is not None:
            self.ask_rename(event.conversation_id)
        elif event.kind == "delete" and event.conversation_id is not None:
            self.ask_delete(event.conversation_id)

    async def action_new_conversation(self) -> None:
        conversation_id = self.guard(self.core.store.new_conversation)
        if conversation_id is not None:
            await self.open_conversation(conversation_id)
            self.query_one(PromptInput).focus()

    def action_rename(self) -> None:
        if self.conversation_id is None:
            self.notify("No conversation is open; ctrl+n starts one.", severity="warning")
            return
        self.ask_rename(self.conversation_id)

    def ask_rename(self, conversation_id: int) -> None:
        conversation = self.guard(self.core.store.get_conversation, conversation_id)
        if conversation is None:
            return

        async def done(title: str | None) -> None:
            if title is not None:
                self.guard(self.core.store.rename_conversation, conversation_id, title)
                await self.refresh_list()

        self.push_screen(RenameDialog(conversation.title, cursor_blink=self.cursor_blink), done)

    def ask_delete(self, conversation_id: int) -> None:
        if self.live and self.live.conversation_id == conversation_id:
            self.notify("An answer is being written there; stop it with Esc first.", severity="warning")
            return
        item = self.query_one(ConversationList).highlighted_conversation
        title = item.title if item and item.id == conversation_id else f"conversation {conversation_id}"

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            self.guard(self.core.store.delete_conversation, conversation_id)
            if conversation_id == self.conversation_id:
                await self.open_conversation(None)
            else:
                await self.refresh_list()

        self.push_screen(ConfirmDialog(f"Delete “{title}” with all its messages and feedback?"), done)

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_focus_list(self) -> None:
        self.query_one(ConversationList).focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # messages and feedback
    def action_select_message(self, step: int) -> None:
        view = self.chat_view
        if not view.has_focus and view.selected is None:
            view.select_last_answer()
        else:
            view.action_select(step)
        view.focus()

    def on_selection_changed(self, event: SelectionChanged) -> None:
        self.refresh_status()

    def refresh_status(self, activity: str = "") -> None:
        view = self.chat_view
        answer = view.selected_message
        if answer is None or answer.role != "assistant":
            answers = [w.message for w in view.message_widgets if w.is_answer and w.message.id]
            answer = answers[-1] if answers else None
        if activity == "" and self.live is not None:
            activity = "writing… (Esc stops)"
        if self.retraining:
            activity = f"{activity} · {self.retraining}" if activity else self.retraining
        self.query_one(StatusBar).show(self.model_label, answer, activity)

    def on_feedback_requested(self, event: FeedbackRequested) -> None:
        if self.live and self.live.answer_id == event.message_id:
            self.notify("Wait for the answer to finish (or stop it with Esc).", severity="warning")
            return
        message = self.guard(self.core.store.get_message, event.message_id)
        if message is None:
            return
        feedback = message.feedback
        if event.kind in ("up", "down"):
            rating = toggled_rating(feedback.rating if feedback else None, 1 if event.kind == "up" else -1)
            self.save_feedback(message.id, rating=rating)
        elif event.kind == "clear":
            self.save_feedback(message.id, rating=None, comment=None, correction=None)
        elif event.kind == "comment":

            def commented(text: str | None) -> None:
                if text is not None:
                    self.save_feedback(message.id, comment=text)

            initial = (feedback.comment or "") if feedback else ""
            self.push_screen(CommentDialog(initial, cursor_blink=self.cursor_blink), commented)
        elif event.kind == "correct":
            start = feedback.correction if feedback and feedback.correction else message.content

            def done(text: str | None) -> None:
                if text is not None:
                    self.save_feedback(message.id, correction=correction_result(text, message.content))

            self.push_screen(CorrectionEditor(start, cursor_blink=self.cursor_blink), done)

    def save_feedback(self, message_id: int, **changes: Any) -> None:
        """Write the change, then show the stored result under the message."""
        try:
            self.core.store.set_feedback(message_id, **changes)
            message = self.core.store.get_message(message_id)
        except UnoError as exc:
            self.notify(str(exc), severity="error", title="uno")
            return
        self.chat_view.update_message(message)
        self.refresh_status()

    # answering
    async def on_prompt_submitted(self, event: PromptSubmitted) -> None:
        if self.live is not None:
            self.notify("An answer is still being written; Esc stops it.", severity="warning")
            return
        store = self.core.store
        text = event.text.strip("\n")
        if self.conversation_id is None:
            conversation_id = self.guard(store.new_conversation, title_from(text))
            if conversation_id is None:
                return
            await self.open_conversation(conversation_id)
        elif not self.chat_view.message_widgets:
            # A conversation started with ctrl+n is named after its first message.
            conversation = self.guard(store.get_conversation, self.conversation_id)
            if conversation and conversation.title == "New chat":
                self.guard(store.rename_conversation, self.conversation_id, title_from(text))
        self.history.add(text)
        self.query_one(PromptInput).clear()
        await self.chat_view.add_pending(text)
        self.live = LiveAnswer(self.conversation_id)
        self._stop.clear()
        self._idle.clear()
        # The model loads on the first answer (App.runtime is a cached property): say so while it does.
        self.refresh_status("loading the model…" if "runtime" not in vars(self.core) else "")
        self.generate(self.conversation_id, text)

    @work(thread=True, exclusive=True, group="answer")
    def generate(self, conversation_id: int, text: str) -> None:
        """Stream one answer in a thread; every delta and the end go to the UI as messages."""
        worker = get_current_worker()
        try:
            chat = self.core.chat  # loads the model on the first answer
            # While a retrain child trains, leave it a core: llama.cpp's threads spin when they wait.
            self.core.runtime.set_threads(1 if self.retraining else None)
            stream_answer(
                chat,
                conversation_id,
                text,
                self.core.settings(),
                self.post_message,
                lambda: self._stop.is_set() or worker.is_cancelled,
            )
        except UnoError as exc:  # the model could not load; stream_answer reports its own errors
            self.post_message(AnswerFailed(conversation_id, str(exc)))
        except Exception as exc:  # unforeseen: one sentence as a toast, never a traceback
            self.post_message(
                AnswerFailed(conversation_id, f"Unexpected {type(exc).__name__}: {exc}; please report it.")
            )
        finally:
            self._idle.set()

    async def on_answer_started(self, event: AnswerStarted) -> None:
        if self.live is None:
            return
        self.live.answer_id = event.answer_id
        if event.conversation_id != self.conversation_id:
            return
        store = self.core.store
        user, answer = (
            self.guard(store.get_message, event.user_id),
            self.guard(store.get_message, event.answer_id),
        )
        await self.chat_view.drop_pending()
        if user is not None and answer is not None:
            await self.chat_view.add_message(user)
            await self.chat_view.add_message(answer, streaming=True)
        await self.refresh_list()
        self.refresh_status()

    async def on_answer_delta(self, event: AnswerDelta) -> None:
        if self.live is not None and self.live.answer_id == event.answer_id:
            self.live.parts.append(event.text)
        await self.chat_view.append(event.answer_id, event.text)

    async def on_answer_finished(self, event: AnswerFinished) -> None:
        self.live = None
        message = self.guard(self.core.store.get_message, event.answer_id)
        if message is not None and event.conversation_id == self.conversation_id:
            await self.chat_view.finish(message)
        if event.stopped:
            self.notify("Stopped; the partial answer is kept and marked incomplete.", title="uno")
        self.show_responder_warnings()
        self.refresh_status()

    def show_responder_warnings(self) -> None:
        """Adapters the router skipped (e.g. a failed checksum) are reported once each, as warnings."""
        chat = vars(self.core).get("chat")  # only if it exists already: never build it here
        warnings = getattr(getattr(chat, "responder", None), "warnings", None)
        while warnings:
            self.notify(warnings.pop(0), severity="warning", title="uno")

    async def on_answer_failed(self, event: AnswerFailed) -> None:
        self.notify(event.error, severity="error", title="uno")
        self.live = None
        if event.conversation_id == self.conversation_id:
            await self.open_conversation(self.conversation_id)

    def action_stop(self) -> None:
        if self.live is not None:
            self._stop.set()
        else:
            self.query_one(PromptInput).focus()

    # retraining
    def action_retrain(self) -> None:
        if self.retraining:
            self.notify(
                "A retrain is already running; its progress is in the status bar.", severity="warning"
            )
            return
        self.retraining = "retrain: starting…"
        self.refresh_status()
        self.notify(
            "Retraining in the background; keep chatting. The next answer after it uses what it learns.",
            title="uno",
        )
        self.retrain_worker()

    @work(thread=True, exclusive=True, group="retrain")
    def retrain_worker(self) -> None:
        def register(proc) -> None:
            self._retrain_proc = proc

        run_retrain(self.core.home, self.core.config.model.path or None, self.post_message, register)

    def on_retrain_progress(self, event: RetrainProgress) -> None:
        detail = f" {event.text[:40]}" if event.text else ""
        self.retraining = f"retrain: {event.stage} {event.done}/{event.total}{detail}"
        self.refresh_status()

    def on_retrain_finished(self, event: RetrainFinished) -> None:
        self.retraining = ""
        self._retrain_proc = None
        self.notify(
            event.summary,
            severity="error" if event.failed else "information",
            title="uno retrain",
            timeout=10,
        )
        self.refresh_status()


def run_tui(app: App) -> None:
    """Open the chat window on `app` (returns when the user quits)."""
    UnoApp(app).run()
