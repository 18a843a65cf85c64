"""The Textual app: wires the sidebar, chat view, prompt and status bar to the core `App`.

User keys -> store changes and a streamed answer (a thread worker iterates the `Turn`) -> widgets.
Every expected failure (`UnoError`) becomes an error toast; the database stays the source of truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from textual import events, work
from textual.app import App as TextualApp
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Input, TextArea
from textual.worker import get_current_worker

from tui.answer import LiveAnswer, stream_answer
from tui.chat_view import ChatView
from tui.conversation_actions import ConversationActions, StartTurn
from tui.dialogs import ConfirmDialog, RenameDialog
from tui.help import HelpScreen
from tui.learning_actions import SCHEDULE_COMMANDS, LearningActions
from tui.messages import (
    AnswerDelta,
    AnswerFailed,
    AnswerFinished,
    AnswerStarted,
    ConversationAction,
    ConversationChosen,
    PromptSubmitted,
    SearchChanged,
    SelectionChanged,
)
from tui.prompt import InputHistory, PromptInput
from tui.retrain_view import RetrainState
from tui.sidebar import ConversationList, Sidebar, search_hit
from tui.status import Status, StatusBar
from uno_local.app import App
from uno_local.errors import UnoError
from uno_local.schedule import chat_generating
from uno_local.store import Message

T = TypeVar("T")
TITLE_LENGTH = 40
# Actions that stay available while a dialog is open; the rest would act on the screen beneath it.
MODAL_SAFE_ACTIONS = {"quit", "help", "command_palette", "focus_next", "focus_previous"}  # Tab: in the dialog
# Palette entries without a key of their own (each is also in a message's Enter menu).
EXTRA_COMMANDS = [
    (
        "Edit and resend your message",
        "The selected one, else your last (Enter e on a message)",
        "edit_resend",
    ),
    ("Copy the code", "The code blocks of the selected, else the last answer (Enter b)", "copy_code"),
]
STATUS_EVERY_S = 0.5  # how often the live tokens/s is redrawn while an answer streams


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


class UnoApp(ConversationActions, LearningActions, TextualApp[None]):
    """uno-local's chat window."""

    CSS_PATH = Path(__file__).with_name("uno.tcss")  # absolute: subclasses live elsewhere
    TITLE = "uno"
    COMMAND_PALETTE_BINDING = "ctrl+p"
    BINDINGS = [
        Binding("f1", "help", "Show every key (this screen)"),
        Binding("ctrl+n", "new_conversation", "New conversation"),
        Binding("ctrl+f", "search", "Search conversations (titles and messages)"),
        Binding("ctrl+o", "focus_list", "Go to the conversation list"),
        Binding("f2", "rename", "Rename the open conversation"),
        Binding("ctrl+up", "select_message(-1)", "Select the previous message"),
        Binding("ctrl+down", "select_message(1)", "Select the next message"),
        Binding("escape", "stop", "Stop the answer being written (else: back to the prompt)"),
        Binding("ctrl+r", "retrain", "Retrain now: learn from your feedback in the background"),
        Binding("ctrl+p", "command_palette", "Command palette: every action by name"),
        # Priority: the prompt's TextArea has its own F6 and F7 (select line / all).
        Binding("f3", "view('feedback')", "Feedback you gave: filter, jump to, edit, forget"),
        Binding("f4", "view('rules')", "What it learned: clusters and their rules (edit, veto)"),
        Binding("f5", "view('adapters')", "Adapters: what serves; roll back, disable, delete"),
        Binding("f6", "view('retrain')", "Retrain: live progress and the last run's report", priority=True),
        Binding("f7", "why", "Why this answer (the selected, else the last answer)", priority=True),
        Binding("ctrl+g", "regenerate", "Regenerate the answer (the selected, else the last)"),
        Binding("ctrl+t", "continue", "Continue the stopped answer (the selected, else the last)"),
        Binding("f8", "conversation_settings", "This conversation's settings: system prompt, temperature"),
        Binding("f9", "export", "Export this conversation to a Markdown file"),
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
        self.retrain_state: RetrainState | None = None
        self._status_at = 0.0

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p): the app's own actions by name, then Textual's."""
        for binding in self.BINDINGS:
            if binding.action not in ("command_palette", "help"):
                yield SystemCommand(binding.description, f"Key: {binding.key}", self._runner(binding.action))
        yield SystemCommand("Keys", "Show every key (F1)", self.action_help)
        for title, help_text, action in EXTRA_COMMANDS:
            yield SystemCommand(title, help_text, self._runner(action))
        for kind, help_text in SCHEDULE_COMMANDS.items():
            yield SystemCommand(f"Overnight learning: {kind}", help_text, self._runner(f"schedule('{kind}')"))
        yield from super().get_system_commands(screen)

    def _runner(self, action: str) -> Callable[[], object]:
        return lambda: self.run_action(action)

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
        self.report_overnight()

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

    async def on_event(self, event: events.Event) -> None:
        # Typing is typing: outside a dialog and a text field, a printable key goes into the prompt
        # (the list's own letters excepted). Decided here, before the key is queued to a widget, so a
        # fast burst cannot reach a widget that was focused a moment ago.
        if isinstance(event, events.Key) and not event.is_forwarded and self.typed_into_prompt(event):
            return
        await super().on_event(event)

    def typed_into_prompt(self, event: events.Key) -> bool:
        if len(self.screen_stack) != 1 or not (event.is_printable and event.character):
            return False
        focused = self.focused
        if isinstance(focused, Input | TextArea):
            return False
        if isinstance(focused, ConversationList) and event.key in ConversationList.LETTERS:
            return False
        prompt = self.query_one(PromptInput)
        self.set_focus(prompt)  # now, not after the queued keys (Widget.focus defers it)
        prompt.insert(event.character)
        return True

    # conversations
    async def refresh_list(self, highlight: int | None = None, row: int | None = None) -> None:
        """Reload the list; the cursor goes to conversation `highlight`, else to `row`, else the open one."""
        store = self.core.store
        conversations = self.guard(store.list_conversations, search=self.search or None) or []
        hits = (
            {c.id: search_hit(store.messages(c.id), self.search) for c in conversations}
            if self.search
            else {}
        )
        await self.query_one(Sidebar).show(
            conversations, self.conversation_id, hits=hits, highlight=highlight, row=row
        )

    async def open_conversation(self, conversation_id: int | None, message_id: int | None = None) -> None:
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
        if message_id is not None and self.chat_view.select_message(message_id):
            self.chat_view.focus()
        self.refresh_status()

    async def on_conversation_chosen(self, event: ConversationChosen) -> None:
        await self.open_conversation(event.conversation_id, event.message_id)
        if event.message_id is None:
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
        # The conversation is stored with its first message: no empty "New chat" rows pile up.
        await self.open_conversation(None)
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
                await self.refresh_list(highlight=conversation_id)

        self.push_screen(RenameDialog(conversation.title, cursor_blink=self.cursor_blink), done)

    def ask_delete(self, conversation_id: int) -> None:
        if self.live and self.live.conversation_id == conversation_id:
            self.notify("An answer is being written there; stop it with Esc first.", severity="warning")
            return
        listing = self.query_one(ConversationList)
        item = listing.highlighted_conversation
        title = item.title if item and item.id == conversation_id else f"conversation {conversation_id}"
        row = listing.index

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            self.guard(self.core.store.delete_conversation, conversation_id)
            if conversation_id == self.conversation_id:
                self.conversation_id = None
                await self.chat_view.show([])
                self.refresh_status()
            # The cursor stays on the same row (now the next conversation), so something is highlighted.
            await self.refresh_list(row=row)

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
        if not view.has_focus:  # coming from the prompt: start at the newest answer
            view.select_last_answer()
        else:
            view.action_select(step)
        view.focus()

    def on_selection_changed(self, event: SelectionChanged) -> None:
        self.refresh_status()

    def refresh_status(self, activity: str = "") -> None:
        answer = self.chat_view.target_answer
        live = self.live
        streaming = bool(live and answer and live.answer_id == answer.id)
        if activity == "" and live is not None:
            activity = "writing… (Esc stops)"
        if self.retraining:
            activity = f"{activity} · {self.retraining}" if activity else self.retraining
        speed = live.tokens_per_s() if streaming and live else None
        self._status_at = time.monotonic()
        self.query_one(StatusBar).show(Status(self.model_label, answer, activity, streaming, speed))

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
        conversation_id = self.conversation_id
        self.start_answer(conversation_id, lambda chat, settings: chat.send(conversation_id, text, settings))

    def start_answer(
        self, conversation_id: int, start: StartTurn, *, rebuilt: bool = False, prefix: str = ""
    ) -> None:
        """Write an answer in the background: `start(chat, settings)` begins the turn (a new message, a
        resent one, more of a stopped answer, whose text so far is `prefix`)."""
        self.live = LiveAnswer(conversation_id, parts=[prefix] if prefix else [])
        self._stop.clear()
        self._idle.clear()
        # The model loads on the first answer (App.runtime is a cached property): say so while it does.
        self.refresh_status("loading the model…" if "runtime" not in vars(self.core) else "")
        self.generate(conversation_id, start, rebuilt)

    @work(thread=True, exclusive=True, group="answer")
    def generate(self, conversation_id: int, start: StartTurn, rebuilt: bool) -> None:
        """Stream one answer in a thread; every delta and the end go to the UI as messages."""
        worker = get_current_worker()
        try:
            chat = self.core.chat  # loads the model on the first answer
            settings = self.core.settings()
            # While a retrain child trains, leave it a core: llama.cpp's threads spin when they wait.
            self.core.runtime.set_threads(1 if self.retraining else None)
            with chat_generating(self.core.home):  # the nightly retrain waits while this is held
                stream_answer(
                    lambda: start(chat, settings),
                    conversation_id,
                    self.post_message,
                    lambda: self._stop.is_set() or worker.is_cancelled,
                    rebuilt=rebuilt,
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
        if event.rebuilt:  # messages were edited, replaced or continued: show the stored conversation
            had_focus = self.chat_view.has_focus
            await self.open_conversation(event.conversation_id)
            if had_focus:  # its selection is gone with the old messages: back to typing
                self.query_one(PromptInput).focus()
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
            self.live.add(event.text)
            if time.monotonic() - self._status_at >= STATUS_EVERY_S:
                self.refresh_status()
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


def run_tui(app: App) -> None:
    """Open the chat window on `app` (returns when the user quits)."""
    UnoApp(app).run()
