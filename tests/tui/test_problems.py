"""The ten problems a new user hit in a quarter of an hour (issue 19), one Pilot test each, on a real
SQLite store (and the real model where an answer streams). Each failed before its fix."""

from __future__ import annotations

import re

import pytest
from rich.cells import cell_len
from textual import events
from textual.command import CommandList, CommandPalette
from textual.widgets import Input, Label, Markdown, Static, TextArea

from tui.chat_view import MessageWidget
from tui.dialogs import ConfirmDialog
from tui.feedback import AnswerActions, CorrectionEditor
from tui.prompt import PromptInput
from tui.sidebar import ConversationItem, ConversationList

from .test_chat import answer_done, wait_for

SIZE = (100, 32)


def titles(app) -> list[str]:
    return [item.conversation.title for item in app.query_one(ConversationList).query(ConversationItem)]


def status_line(app) -> str:
    return str(app.query_one("#status", Static).content)


@pytest.mark.asyncio
async def test_1_typing_after_selecting_a_message_reaches_the_prompt(seeded, make_app):
    store = seeded.store
    before = store.db.execute("SELECT * FROM feedback ORDER BY id").fetchall()
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+up", *"hello", "?", "x")
        assert len(app.screen_stack) == 1  # no editor, no help, nothing stacked
        assert app.query_one(PromptInput).text == "hello?x" and app.focused is app.query_one(PromptInput)
        assert store.db.execute("SELECT * FROM feedback ORDER BY id").fetchall() == before

        # The actions live behind Enter; x asks first, and n keeps the feedback.
        await pilot.press("ctrl+up", "enter")
        assert isinstance(app.screen, AnswerActions)
        answer = app.chat_view.selected_message
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert store.get_message(answer.id).feedback.correction
        await pilot.press("enter", "x", "y")
        assert store.get_message(answer.id).feedback is None
        assert len(app.screen_stack) == 1


@pytest.mark.asyncio
async def test_1b_a_burst_of_typing_is_never_taken_for_keys(seeded, make_app):
    # As from tmux: the keys arrive together, before any of them is handled.
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        for start in ("ctrl+o", "ctrl+up"):  # from the conversation list, then from a selected answer
            await pilot.press("ctrl+u", start)
            for character in "hello there, rex?":
                app.post_message(events.Key(character, character))
            await pilot.pause()
            assert len(app.screen_stack) == 1, start
            assert app.query_one(PromptInput).text == "hello there, rex?", start
            app.query_one(PromptInput).clear()


@pytest.mark.asyncio
async def test_2_status_bar_is_true_while_an_answer_streams(core, make_app):
    core.config.generation.max_tokens = 400
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Write a long story about a dragon and a knight.", "enter")
        await wait_for(pilot, lambda: app.live is not None and len(app.live.parts) >= 12)
        await pilot.pause(0.6)  # the live speed is redrawn twice a second
        line = status_line(app)
        assert "incomplete" not in line and "writing" in line
        assert re.search(r"\d+\.\d tok/s", line), line
        await pilot.press("escape")
        await answer_done(pilot)
        assert "stopped, incomplete" in status_line(app)


@pytest.mark.asyncio
async def test_3_a_correction_shows_in_place_and_search_finds_it(seeded, make_app):
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+up")
        answer = app.chat_view.selected_message
        widget = app.chat_view.query_one(f"#msg-{answer.id}", MessageWidget)
        shown = widget.query_one(".message-correction", Markdown)
        assert shown.source == answer.feedback.correction and shown.display and shown.region.height > 0
        assert widget.has_class("-corrected")

        await pilot.press("ctrl+f", *"whatever iterable")  # words only in the correction
        assert titles(app) == ["Python: list or tuple?"]


@pytest.mark.asyncio
async def test_4_correction_editor_select_all_and_kill_line(seeded, make_app):
    store = seeded.store
    app = make_app(seeded)
    async with app.run_test(size=(60, 32)) as pilot:
        await pilot.press("ctrl+up", "up", "up", "enter", "e")
        assert isinstance(app.screen, CorrectionEditor)
        editor = app.screen.query_one(TextArea)
        await pilot.press("ctrl+a", *"Use a tuple for fixed data.")
        assert editor.text == "Use a tuple for fixed data."

        # ctrl+k deletes to the end of the line as written, even where it wraps over screen lines.
        long_line = "one two three four five six seven eight nine ten " * 3
        editor.load_text(f"{long_line}\nsecond line")
        editor.move_cursor((0, 8))
        await pilot.press("ctrl+k")
        assert editor.text == "one two \nsecond line"
        await pilot.press("ctrl+k")
        assert editor.text == "one two second line"
        await pilot.press("ctrl+s")
        corrected = app.chat_view.selected_message
        assert store.get_message(corrected.id).feedback.correction == "one two second line"


@pytest.mark.asyncio
async def test_5_rename_keeps_the_conversation_in_its_place(seeded, make_app):
    store = seeded.store
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        order = titles(app)
        await pilot.press("ctrl+o", "down", "r", "ctrl+u", *"Rain gear", "enter")
        assert titles(app) == [order[0], "Rain gear", order[2]]
        listing = app.query_one(ConversationList)
        assert listing.highlighted_conversation.title == "Rain gear"
        # The same keys again act on the row the user sees: ↑ is the first conversation.
        await pilot.press("ctrl+o", "up", "r", "ctrl+u", *"Lists and tuples", "enter")
        assert titles(app) == ["Lists and tuples", "Rain gear", order[2]]
        assert [c.title for c in store.list_conversations()] == titles(app)


@pytest.mark.asyncio
async def test_6_no_empty_new_chats_and_a_highlight_after_deleting_the_open_one(seeded, make_app):
    store = seeded.store
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+n", "ctrl+n", "ctrl+n")
        assert len(store.list_conversations()) == 3 and len(titles(app)) == 3
        assert app.conversation_id is None and app.query_one("#chat-empty").display

        await pilot.press("ctrl+o", "enter")  # open the first one, then delete it
        opened = app.conversation_id
        await pilot.press("ctrl+o", "d", "y")
        listing = app.query_one(ConversationList)
        assert opened not in [c.id for c in store.list_conversations()]
        assert listing.index == 0 and listing.highlighted_child.highlighted
        assert listing.highlighted_conversation.title == titles(app)[0]


@pytest.mark.asyncio
async def test_7_search_matches_all_words_with_a_snippet_and_jumps_to_the_message(seeded, make_app):
    app = make_app(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+f", *"socks dry")  # both words, in another order than in the answer
        assert titles(app) == ["Packing for a rainy hike"]
        item = app.query_one(ConversationList).query_one(ConversationItem)
        snippet = str(item.query_one(".conv-snippet", Label).content)
        assert "spare socks, a dry bag" in snippet
        count = app.query_one("#sidebar-count", Label)
        text = str(count.content)
        assert text == "1 conversation found for “socks dry”"
        assert count.size.width * count.size.height >= cell_len(text) and count.size.height >= 2

        await pilot.press("enter", "enter")  # to the list, then open at the hit
        selected = app.chat_view.selected_message
        assert selected.id == item.hit.message_id and "spare socks" in selected.content
        assert app.focused is app.chat_view


@pytest.mark.asyncio
async def test_8_layout_follows_the_terminal(seeded, make_app):
    store = seeded.store
    long_title = "Planning a three-week trip through Japan"  # 40 characters: the longest automatic title
    conversation = store.new_conversation(long_title)
    store.add_message(conversation, "user", "Where should I start?")
    store.add_message(conversation, "assistant", "\n\n".join(f"Day {day}: Tokyo. " * 20 for day in range(30)))
    app = make_app(seeded)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        sidebar = app.query_one("#sidebar")
        assert sidebar.size.width > 40
        label = app.query_one(f"#conv-{conversation} .conv-title", Label)
        assert label.content_region.width >= len(long_title)
        body = app.chat_view.query(".message-body").last()
        assert body.size.width <= 100  # answer lines stop at a readable width

        # End and Home in the list.
        await pilot.press("ctrl+o", "end")
        assert app.query_one(ConversationList).index == len(titles(app)) - 1
        await pilot.press("home")
        assert app.query_one(ConversationList).index == 0

        # A resize keeps the newest answer in view.
        await pilot.press("enter")
        assert app.chat_view.max_scroll_y > 0 and app.chat_view.scroll_y == app.chat_view.max_scroll_y
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        view = app.chat_view
        assert view.scroll_y == view.max_scroll_y

        # At 80x24 the status bar's text fits its line.
        status = app.query_one("#status", Static)
        assert cell_len(status_line(app)) <= status.content_size.width
        assert "tok/s" in status_line(app)


@pytest.mark.asyncio
async def test_9_a_long_comment_is_shown_whole(seeded, make_app):
    comment = (
        "Too long for a quick question: give the rule first, then one example, and leave out the "
        "performance details unless I ask for them."
    )
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+up", "enter", "c", "ctrl+u", *comment, "enter")
        answer = app.chat_view.selected_message
        line = app.chat_view.query_one(f"#msg-{answer.id} .message-feedback", Static)
        assert comment in str(line.content)
        assert line.size.height >= 2  # wrapped, not cut


@pytest.mark.asyncio
async def test_command_palette_runs_the_apps_actions(seeded, make_app):
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"search conversations")
        commands = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: commands.option_count > 0, timeout=10)
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is app.query_one("#search", Input)
