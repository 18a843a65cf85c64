"""Pilot tests of the TUI on the real model and a real SQLite store: chat, feedback, conversations,
help, errors and stopping an answer. Each step checks both the screen and the rows in the store."""

from __future__ import annotations

import asyncio
import io
import re
import time

import pytest
from rich.console import Console
from textual.widgets import Input, Markdown, Static, TextArea

from tui.chat_view import ChatView, MessageWidget
from tui.feedback import CommentDialog, CorrectionEditor
from tui.help import HelpScreen, key_label
from tui.prompt import InputHistory, PromptInput
from tui.sidebar import ConversationItem, ConversationList

SIZE = (100, 32)


async def wait_for(pilot, condition, timeout: float = 120.0) -> None:
    """Let the app run until `condition()` holds (a guard against hangs, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app never reached the expected state"
        await pilot.pause(0.02)


async def answer_done(pilot) -> None:
    """Wait until the answer being written has finished and the UI has caught up."""
    app = pilot.app
    await wait_for(pilot, lambda: app.live is None and app._idle.is_set())
    await app.workers.wait_for_complete()
    await pilot.pause()
    await asyncio.sleep(0)


def feedback_shown(app, message_id: int) -> str:
    widget = app.chat_view.query_one(f"#msg-{message_id}", MessageWidget)
    line = widget.query_one(".message-feedback", Static)
    return str(line.content) if widget.has_class("-has-feedback") else ""


def answer_of(store, conversation_id):
    return [m for m in store.messages(conversation_id) if m.role == "assistant"][-1]


@pytest.mark.asyncio
async def test_chat_streams_answer_and_records_every_kind_of_feedback(core, make_app):
    store = core.store
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        assert app.query_one("#chat-empty").display
        assert store.list_conversations() == []

        await pilot.press("ctrl+n")  # stored with its first message, not before
        assert store.list_conversations() == [] and app.conversation_id is None

        # A warning the router collected (an adapter it had to skip) is shown once after the answer.
        core.chat.responder.warnings.append("Adapter a1 failed its checksum; the base model answers instead.")
        await pilot.press(*"What is the capital of France?", "enter")
        await answer_done(pilot)
        (conversation,) = store.list_conversations()
        assert app.conversation_id == conversation.id
        assert ("warning", "Adapter a1 failed its checksum; the base model answers instead.") in app.toasts
        assert core.chat.responder.warnings == []

        user, answer = store.messages(conversation.id)
        assert (user.role, user.content) == ("user", "What is the capital of France?")
        assert answer.role == "assistant" and answer.complete and answer.content.strip()
        assert answer.route == "base" and answer.completion_tokens > 0
        row = store.db.execute("SELECT complete FROM messages WHERE id = ?", [answer.id]).fetchone()
        assert row == (1,)
        assert store.get_conversation(conversation.id).title == "What is the capital of France?"
        # The text grew on screen while it streamed, and the final view is the stored answer.
        assert len(set(app.shown_lengths)) >= 2
        markdown = app.chat_view.query_one(f"#msg-{answer.id} Markdown", Markdown)
        assert markdown.source == answer.content
        route = app.chat_view.query_one(f"#msg-{answer.id} .message-route", Static)
        assert str(route.content) == "base model"
        status = str(app.query_one("#status", Static).content)
        assert "SmolLM2-135M-Instruct.Q4_1" in status and re.search(r"\d+\.\d tok/s", status)
        assert "base model" in status
        prompt = app.query_one(PromptInput)
        assert prompt.text == ""

        # The prompt: ctrl+j adds a line; up on the first line recalls the sent text, down the draft.
        await pilot.press(*"one", "ctrl+j", *"two")
        assert prompt.text == "one\ntwo"
        await pilot.press("up")  # on the second line: only moves up
        assert prompt.text == "one\ntwo" and prompt.cursor_location[0] == 0
        await pilot.press("up")
        assert prompt.text == "What is the capital of France?"
        await pilot.press("down")
        assert prompt.text == "one\ntwo"

        # Select the answer and rate it (Enter opens its actions): up, up again (toggles off), down.
        await pilot.press("ctrl+up")
        assert isinstance(app.focused, ChatView) and app.chat_view.selected_message.id == answer.id
        await pilot.press("enter", "+")
        assert store.get_message(answer.id).feedback.rating == 1
        assert feedback_shown(app, answer.id) == "👍"
        await pilot.press("enter", "+")
        assert store.get_message(answer.id).feedback is None
        assert feedback_shown(app, answer.id) == ""
        await pilot.press("enter", "-")
        assert store.get_message(answer.id).feedback.rating == -1
        assert feedback_shown(app, answer.id) == "👎"

        # A comment, then an edit of it (the dialog comes back prefilled); the rating stays.
        await pilot.press("enter", "c")
        assert isinstance(app.screen, CommentDialog)
        await pilot.press(*"too short", "enter")
        feedback = store.get_message(answer.id).feedback
        assert (feedback.rating, feedback.comment) == (-1, "too short")
        assert feedback_shown(app, answer.id) == "👎  comment: too short"
        await pilot.press("enter", "c")
        assert app.screen.query_one(Input).value == "too short"
        await pilot.press("ctrl+u", *"say which country", "enter")
        feedback = store.get_message(answer.id).feedback
        assert (feedback.rating, feedback.comment) == (-1, "say which country")

        # The correction editor starts from the answer; saving it unchanged stores no correction.
        await pilot.press("enter", "e")
        assert isinstance(app.screen, CorrectionEditor)
        editor = app.screen.query_one(TextArea)
        assert editor.text == answer.content
        await pilot.press("ctrl+s")
        assert store.get_message(answer.id).feedback.correction is None
        await pilot.press("enter", "e")
        editor = app.screen.query_one(TextArea)
        editor.load_text("")
        await pilot.press(*"Paris is the capital of France.", "ctrl+s")
        feedback = store.get_message(answer.id).feedback
        assert feedback.correction == "Paris is the capital of France."
        assert (feedback.rating, feedback.comment) == (-1, "say which country")
        assert feedback_shown(app, answer.id) == "👎  comment: say which country  ✎ corrected"
        # Editing again starts from the earlier correction; Esc leaves everything as it was.
        await pilot.press("enter", "e")
        assert app.screen.query_one(TextArea).text == "Paris is the capital of France."
        await pilot.press("escape")
        assert store.get_message(answer.id).feedback.correction == "Paris is the capital of France."

        # Remove all of it (x asks first).
        await pilot.press("enter", "x", "y")
        assert store.get_message(answer.id).feedback is None
        assert store.db.execute("SELECT COUNT(*) FROM feedback").fetchone() == (0,)
        assert feedback_shown(app, answer.id) == ""
        assert not [t for t in app.toasts if t[0] == "error"]


def test_input_history_walks_back_and_keeps_the_draft():
    history = InputHistory()
    assert history.previous("draft") is None
    for text in ["a", "b", "b"]:
        history.add(text)
    assert history.entries == ["a", "b"]
    assert [history.previous("draft"), history.previous("x"), history.previous("y")] == ["b", "a", None]
    assert [history.following(), history.following(), history.following()] == ["b", "draft", None]


@pytest.mark.asyncio
async def test_escape_stops_the_answer_and_keeps_an_incomplete_partial(core, make_app):
    core.config.generation.max_tokens = 400
    store = core.store
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Write a long story about a dragon and a knight.", "enter")
        await wait_for(pilot, lambda: app.live is not None and app.live.parts)
        await pilot.press("escape")
        await answer_done(pilot)
        (conversation,) = store.list_conversations()
        answer = answer_of(store, conversation.id)
        assert not answer.complete and answer.content
        assert answer.completion_tokens < 400
        assert store.db.execute("SELECT complete FROM messages WHERE id = ?", [answer.id]).fetchone() == (0,)
        assert app.chat_view.query_one(f"#msg-{answer.id} Markdown", Markdown).source == answer.content
        route = app.chat_view.query_one(f"#msg-{answer.id} .message-route", Static)
        assert str(route.content) == "base model · stopped, incomplete"
        assert any("Stopped" in text for _, text in app.toasts)

        # The runtime is free again: the next answer streams to the end.
        core.config.generation.max_tokens = 16
        await pilot.press(*"Thanks!", "enter")
        await answer_done(pilot)
        last = answer_of(store, conversation.id)
        assert last.id != answer.id and last.complete and last.content


@pytest.mark.asyncio
async def test_quitting_mid_answer_stores_the_partial_and_exits(core, make_app):
    core.config.generation.max_tokens = 400
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Write a long story about a dragon and a knight.", "enter")
        await wait_for(pilot, lambda: app.live is not None and app.live.parts)
        await pilot.press("ctrl+q")
    assert app.return_code == 0
    (conversation,) = core.store.list_conversations()
    user, answer = core.store.messages(conversation.id)
    assert user.complete and not answer.complete and answer.content
    assert app._idle.is_set()


@pytest.mark.asyncio
async def test_rename_search_and_delete_conversations(seeded, make_app):
    store = seeded.store
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(ConversationList)
        titles = lambda: [item.conversation.title for item in listing.query(ConversationItem)]  # noqa: E731
        assert titles() == ["Python: list or tuple?", "Packing for a rainy hike", "Birthday poem for Ana"]
        current = app.conversation_id
        assert store.get_conversation(current).title == "Python: list or tuple?"

        await pilot.press("f2")
        assert app.screen.query_one(Input).value == "Python: list or tuple?"
        await pilot.press("ctrl+u", *"Tuples vs lists", "enter")
        assert store.get_conversation(current).title == "Tuples vs lists"
        assert "Tuples vs lists" in titles()

        await pilot.press("ctrl+f", *"rain")
        assert titles() == ["Packing for a rainy hike"]
        await pilot.press(*["backspace"] * 4, *"sorted")  # matches message text too
        assert titles() == ["Tuples vs lists"]
        await pilot.press(*["backspace"] * 6)
        assert len(titles()) == 3

        # Delete the highlighted conversation: n keeps it, y deletes it.
        await pilot.press("ctrl+o", "down")
        doomed = listing.highlighted_conversation
        assert doomed.title == "Packing for a rainy hike"
        await pilot.press("d", "n")
        assert store.get_conversation(doomed.id).title == "Packing for a rainy hike"
        await pilot.press("d", "y")
        remaining = ["Tuples vs lists", "Birthday poem for Ana"]
        assert [c.title for c in store.list_conversations()] == remaining
        assert titles() == remaining
        assert app.conversation_id == current

        # Deleting the open conversation empties the chat view; enter opens another.
        await pilot.press("up", "d", "y")
        assert app.conversation_id is None and app.query_one("#chat-empty").display
        await pilot.press("enter")
        assert store.get_conversation(app.conversation_id).title == "Birthday poem for Ana"
        assert len(app.chat_view.message_widgets) == 2
        assert not [t for t in app.toasts if t[0] == "error"]


def own_bindings():
    """Every binding declared in the tui package, found by walking its modules (not the help's list)."""
    import importlib
    import pkgutil

    import tui

    found = {}
    for info in pkgutil.iter_modules(tui.__path__):
        module = importlib.import_module(f"tui.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and "BINDINGS" in vars(value):
                found[value.__name__] = value.BINDINGS
    return found


@pytest.mark.asyncio
async def test_help_screen_lists_every_binding(seeded, make_app):
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        console = Console(width=120, file=io.StringIO(), record=True)
        console.print(app.screen.query_one("#help-table", Static).content)
        text = console.export_text()
        bindings = own_bindings()
        assert {"UnoApp", "ChatView", "PromptInput", "ConversationList", "HelpScreen"} <= set(bindings)
        for owner, entries in bindings.items():
            for binding in entries:
                assert binding.description in text, (owner, binding.description)
                for key in binding.key.split(","):
                    assert key_label(key) in text, (owner, key)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("ctrl+o", "?")  # '?' is typing: outside a dialog it goes to the prompt
        assert not isinstance(app.screen, HelpScreen) and app.query_one(PromptInput).text == "?"


@pytest.mark.asyncio
async def test_expected_failures_become_toasts(seeded, make_app):
    store = seeded.store
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        # Feedback on an answer that vanished from the database.
        await pilot.press("ctrl+up")
        gone = app.chat_view.selected_message
        store.db.execute("DELETE FROM messages WHERE id = ?", [gone.id])
        store.db.conn.commit()
        await pilot.press("enter")
        assert ("error", f"Message {gone.id} does not exist.") in app.toasts

        # Deleting a conversation that another process already deleted.
        await pilot.press("ctrl+o", "down")
        doomed = app.query_one(ConversationList).highlighted_conversation
        store.delete_conversation(doomed.id)
        await pilot.press("d", "y")
        assert any(
            sev == "error" and f"Conversation {doomed.id} does not exist" in text for sev, text in app.toasts
        )
        assert app.is_running


@pytest.mark.asyncio
async def test_a_missing_model_is_a_toast_not_a_crash(uno_home, make_app):
    from uno_local.app import App

    core = App.open(home=uno_home)
    core.config.model.path = str(uno_home / "missing.gguf")
    app = make_app(core)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"hello", "enter")
            await answer_done(pilot)
            assert any(sev == "error" and "Model file not found" in text for sev, text in app.toasts)
            assert app.is_running and not app.chat_view.message_widgets
            (conversation,) = core.store.list_conversations()
            assert core.store.messages(conversation.id) == []
    finally:
        core.close()
