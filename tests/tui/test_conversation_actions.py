"""Pilot tests of what users of other chat apps expect: regenerate an answer, continue a stopped one,
edit and resend a message, the conversation's own settings, the Markdown export and copying code.
On the real model (short, greedy answers) and a real SQLite store; each checks the screen and the rows."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Markdown, TextArea

from tests.tui.test_chat import SIZE, answer_done, answer_of, wait_for
from tui.chat_view import MessageWidget
from tui.conversation_dialogs import QuestionActions, ResendEditor, SettingsDialog
from tui.dialogs import ConfirmDialog
from tui.prompt import PromptInput
from uno_local.chat import conversation_settings, history_for_model
from uno_local.store import ConversationSettings


def shown_ids(app) -> list[int]:
    return [w.message.id for w in app.chat_view.query(MessageWidget)]


async def ask(pilot, text: str) -> int:
    """Send `text` and wait for its answer; returns the conversation id."""
    await pilot.press(*text, "enter")
    await answer_done(pilot)
    return pilot.app.conversation_id


@pytest.mark.asyncio
async def test_regenerate_replaces_the_answer_with_the_conversation_settings(core, make_app):
    store = core.store
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        conversation_id = await ask(pilot, "What is the capital of France?")
        user, old = store.messages(conversation_id)
        store.set_conversation_settings(conversation_id, ConversationSettings("Answer in one word.", 0.05))

        await pilot.press("ctrl+g")
        await answer_done(pilot)
        user_after, new = store.messages(conversation_id)
        assert user_after == user and new.id > old.id and new.complete and new.content
        assert new.settings["temperature"] == 0.05  # the conversation's own temperature
        assert shown_ids(app) == [user.id, new.id]
        body = app.chat_view.query_one(f"#msg-{new.id} Markdown", Markdown)
        assert body.source == new.content

        # With feedback on it, regenerating asks first; n keeps the answer and its feedback.
        store.set_feedback(new.id, rating=-1)
        await pilot.press("ctrl+up", "enter", "r")
        assert isinstance(app.screen, ConfirmDialog) and "feedback on" in app.screen.question
        await pilot.press("n")
        assert [m.id for m in store.messages(conversation_id)] == [user.id, new.id]
        assert app.live is None


@pytest.mark.asyncio
async def test_continue_writes_more_of_a_stopped_answer(core, make_app):
    core.config.generation.max_tokens = 400
    store = core.store
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Write a long story about a dragon and a knight.", "enter")
        await wait_for(pilot, lambda: app.live is not None and len(app.live.parts) > 3)
        await pilot.press("escape")
        await answer_done(pilot)
        stopped = answer_of(store, app.conversation_id)
        assert not stopped.complete

        core.config.generation.max_tokens = 12
        await pilot.press("ctrl+t")
        await answer_done(pilot)
        continued = answer_of(store, app.conversation_id)
        assert continued.id == stopped.id and continued.complete
        assert continued.content.startswith(stopped.content) and len(continued.content) > len(stopped.content)
        body = app.chat_view.query_one(f"#msg-{continued.id} Markdown", Markdown)
        assert body.source == continued.content

        # A complete answer is not continued: one sentence, nothing written.
        await pilot.press("ctrl+t")
        assert (
            app.live is None
            and ("warning", f"Answer #{continued.id} is complete; r in its menu writes a new one.")
            in app.toasts
        )


@pytest.mark.asyncio
async def test_edit_and_resend_your_message(core, make_app):
    store = core.store
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        conversation_id = await ask(pilot, "What is the capital of France?")
        user, old = store.messages(conversation_id)

        await pilot.press("ctrl+up", "up", "enter")  # the question, then its menu
        assert isinstance(app.screen, QuestionActions)
        await pilot.press("e")
        assert isinstance(app.screen, ResendEditor)
        assert app.screen.query_one(TextArea).text == "What is the capital of France?"
        await pilot.press("ctrl+a", *"What is the capital of Italy?", "ctrl+s")
        await answer_done(pilot)

        edited, new = store.messages(conversation_id)
        assert (edited.id, edited.content) == (user.id, "What is the capital of Italy?")
        assert new.id > old.id and new.complete
        assert shown_ids(app) == [user.id, new.id]
        assert history_for_model(store, conversation_id)[0]["content"] == "What is the capital of Italy?"
        assert app.focused is app.query_one(PromptInput)  # the old selection went: back to typing


@pytest.mark.asyncio
async def test_conversation_settings_are_stored_with_the_conversation(seeded, make_app):
    store = seeded.store
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        dialog = app.screen
        assert isinstance(dialog, SettingsDialog)
        assert "SmolLM2" in str(dialog.query_one("#settings-model").content)  # the model answering
        await pilot.press(*"Be brief.", "tab", *"-1", "ctrl+s")
        assert app.screen is dialog  # refused in one sentence, nothing saved
        assert any(sev == "error" and "temperature" in text for sev, text in app.toasts)
        assert store.conversation_settings(app.conversation_id) == ConversationSettings()

        dialog.query_one(Input).value = "0.7"
        await pilot.press("ctrl+s")
        assert app.screen is not dialog
        conversation_id = app.conversation_id
        assert store.conversation_settings(conversation_id) == ConversationSettings("Be brief.", 0.7)
        assert history_for_model(store, conversation_id)[0] == {"role": "system", "content": "Be brief."}
        assert conversation_settings(store, conversation_id, seeded.settings()).temperature == 0.7

        await pilot.press("f8")  # it opens on what was saved
        assert app.screen.query_one(TextArea).text == "Be brief."
        assert app.screen.query_one(Input).value == "0.7"


@pytest.mark.asyncio
async def test_export_to_markdown_and_copy_code(seeded, make_app, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = seeded.store
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        conversation = store.get_conversation(app.conversation_id)
        await pilot.press("f9")
        (path,) = tmp_path.glob("uno-*.md")
        text = path.read_text()
        assert text.startswith(f"# {conversation.title}\n")
        for message in store.messages(conversation.id):
            assert f"#{message.id}" in text and message.content.strip() in text
        assert ("information", f"Saved this conversation as Markdown to {path}.") in app.toasts

        python = next(c for c in store.list_conversations() if c.title.startswith("Python"))
        await app.open_conversation(python.id)
        with_code = next(m for m in store.messages(python.id) if "```" in m.content)
        app.chat_view.select_message(with_code.id)
        app.chat_view.focus()
        await pilot.press("enter", "b")
        assert app.clipboard == "point = (3, 4)      # fixed pair\nqueue = [1, 2, 3]   # grows and shrinks"

        commands = {c.title for c in app.get_system_commands(app.screen)}
        assert {
            "Regenerate the answer (the selected, else the last)",
            "Continue the stopped answer (the selected, else the last)",
            "Edit and resend your message",
            "Copy the code",
            "This conversation's settings: system prompt, temperature",
            "Export this conversation to a Markdown file",
        } <= commands
