"""The learning views on a real store and the real adapter registry: Feedback (F3), Rules (F4),
Adapters (F5), Retrain (F6) and Why this answer (F7 / Enter w), and what the chat says on start
about retrains that ran while it was closed. Each step checks the screen and the rows written."""

from __future__ import annotations

import json

import pytest
from textual.widgets import DataTable, Static, TextArea

from tui.adapters_view import AdaptersScreen
from tui.dialogs import ConfirmDialog
from tui.feedback import CommentDialog
from tui.feedback_view import FeedbackScreen
from tui.learning import WhyScreen
from tui.messages import RetrainProgress
from tui.retrain_view import RetrainScreen, RetrainState, seconds_left
from tui.rules_view import RulesEditor, RulesScreen
from uno_local.errors import NotFoundError
from uno_local.store.learning import load_clusters

SIZE = (100, 32)


def keys(screen) -> list[str]:
    table = screen.query_one(DataTable)
    return [row.key.value for row in table.ordered_rows]


def detail(screen) -> str:
    return str(screen.query_one(".view-detail", Static).content)


def answers_with_feedback(store) -> list[int]:
    return [log.message_id for log in store.logs(with_feedback_only=True)]


@pytest.mark.asyncio
async def test_feedback_view_filters_jumps_edits_and_forgets(learned, make_app):
    store = learned.store
    app = make_app(learned)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        screen = app.screen
        assert isinstance(screen, FeedbackScreen)
        stamps = {log.message_id: log.feedback.updated_at for log in store.logs(with_feedback_only=True)}
        newest_first = sorted(stamps, key=stamps.get, reverse=True)
        assert keys(screen) == [str(i) for i in newest_first] and len(newest_first) == 3
        assert "Correction: `sorted()` always returns a new **list**" in detail(screen)

        await pilot.press("k")  # kind: thumbs up only
        assert len(keys(screen)) == 2
        await pilot.press("k", "k", "k")  # correction
        assert keys(screen) == [str(newest_first[0])]
        await pilot.press("k", "slash", *"poem ana", "enter")  # all kinds, two words
        (poem,) = keys(screen)
        assert "birthday poem" in store.get_message(int(poem) - 1).content

        await pilot.press("c")
        assert isinstance(app.screen, CommentDialog)
        await pilot.press(*"Lovely", "enter")
        assert store.get_message(int(poem)).feedback.comment == "Lovely"
        assert "comment: Lovely" in detail(screen)

        # Enter jumps to the answer in its conversation.
        await pilot.press("enter")
        assert not isinstance(app.screen, FeedbackScreen)
        assert app.chat_view.selected_message.id == int(poem)
        assert app.conversation_id == store.get_message(int(poem)).conversation_id

        # x forgets, after asking.
        await pilot.press("f3", "slash", *"poem", "enter", "x")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert int(poem) in answers_with_feedback(store)
        await pilot.press("x", "y")
        assert int(poem) not in answers_with_feedback(store) and keys(app.screen) == []
        assert "No feedback matches" in detail(app.screen)
        await pilot.press("escape", "escape")
        assert len(app.screen_stack) == 1


@pytest.mark.asyncio
async def test_rules_view_shows_edits_and_vetoes(learned, make_app):
    store = learned.store
    app = make_app(learned)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        screen = app.screen
        assert isinstance(screen, RulesScreen) and keys(screen) == ["1", "2", "3"]
        text = detail(screen)
        assert "Answer Python questions with a short example." in text
        assert "Judged epochs' win rates: epoch 1: 0.50, epoch 2: 0.75" in text
        assert "When should I use a tuple instead of a list in Python?" in text
        assert screen.query_one(DataTable).get_row("1")[5] == "expert-c1 v2"

        await pilot.press("v")
        assert [r.vetoed for r in load_clusters(store)] == [True, False, True]
        await pilot.press("v")
        assert [r.vetoed for r in load_clusters(store)] == [False, False, True]

        await pilot.press("down", "e")
        assert isinstance(app.screen, RulesEditor)
        app.screen.query_one(TextArea).load_text("- Keep it to two lines.\n- Rhyme the lines.\n")
        await pilot.press("ctrl+s")
        assert load_clusters(store)[1].user_rules == ["Keep it to two lines.", "Rhyme the lines."]
        assert "Rules (your edit):" in detail(screen) and "Rhyme the lines." in detail(screen)


@pytest.mark.asyncio
async def test_adapters_view_rolls_back_disables_enables_and_deletes(learned, make_app):
    registry = learned.registry
    app = make_app(learned)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f5")
        screen = app.screen
        assert isinstance(screen, AdaptersScreen)
        assert keys(screen) == ["critic-c2@v1", "expert-c1@v2", "expert-c1@v1"]
        table = screen.query_one(DataTable)
        assert table.get_row("expert-c1@v2")[0] == "*" and table.get_row("expert-c1@v1")[0] == ""
        assert table.get_row("expert-c1@v2")[8] == "SmolLM2-135M-Instruct.Q4_1"

        await pilot.press("down", "b")  # roll back expert-c1: v1 serves again
        assert registry.deployed("expert-c1").version == 1
        assert table.get_row("expert-c1@v1")[0] == "*"
        await pilot.press("d")
        assert not registry.versions("expert-c1")[0].enabled
        await pilot.press("n")
        assert registry.versions("expert-c1")[0].enabled

        await pilot.press("x")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert len(registry.versions("expert-c1")) == 2
        await pilot.press("x", "y")
        with pytest.raises(NotFoundError):
            registry.versions("expert-c1")
        assert keys(screen) == ["critic-c2@v1"]


@pytest.mark.asyncio
async def test_retrain_view_shows_live_progress_and_the_last_report(learned, make_app):
    app = make_app(learned)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        screen = app.screen
        assert isinstance(screen, RetrainScreen)
        report = str(screen.query_one("#retrain-report", Static).content)
        assert "deployed expert-c1@v2, critic-c2@v1" in report
        assert "c1: 2 logs, gap 0.31 -> expert, win rate 0.75. shipped: epoch 2 won 3 of 4" in report
        # A few held-out questions, answered by the base model and by the new adapter.
        assert "Held-out questions, answered before (base model) and after (the new adapter):" in report
        assert "  c1 · Is a dict ordered in Python?\n    before: No, dictionaries are unordered" in report
        assert "    after:  Yes: since Python 3.7 a dict keeps insertion order. ```python d = {" in report
        assert "No retrain is running" in str(screen.query_one("#retrain-progress", Static).content)

        # The progress lines of a running retrain (as the child process reports them) show per stage.
        app.retraining = "retrain: starting…"
        for event in (
            RetrainProgress("collect", 5, 5, "5 logs"),
            RetrainProgress("train", 1, 4, "c1 epoch 1"),
        ):
            app.post_message(event)
        await pilot.pause()
        screen.refresh_view()
        progress = str(screen.query_one("#retrain-progress", Static).content)
        assert "✓ collect   5/5" in progress and "▸ train     1/4  c1 epoch 1" in progress
        assert "s left" in progress or "estimating" in progress


def test_time_left_is_the_stage_pace_plus_the_later_stages_last_time():
    state = RetrainState(started=0.0)
    state.update("train", 0, 4, "", now=100.0)
    assert seconds_left(state, {}, now=110.0) is None  # no step done yet: nothing to go on
    state.update("train", 1, 4, "", now=130.0)
    last = {"train": 999.0, "convert": 5.0, "validate": 150.0, "deploy": 10.0}
    assert seconds_left(state, last, now=130.0) == pytest.approx(30.0 * 3 + 5.0 + 150.0 + 10.0)


@pytest.mark.asyncio
async def test_why_this_answer_in_place(learned, make_app):
    app = make_app(learned)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+up", "up", "up", "enter", "w")
        assert isinstance(app.screen, WhyScreen)
        answer = app.chat_view.selected_message
        text = str(app.screen.query_one("#why-text", Static).content)
        assert text.startswith(f"Answer #{answer.id}: route expert, adapter adapter-c1, cluster 1")
        assert "Closest to cluster 1 (distance 0.21" in text and "- Answer Python questions" in text
        assert f"uno explain {answer.id}" in text
        header = app.chat_view.query_one(f"#msg-{answer.id} .message-header", Static)
        assert f"#{answer.id}" in str(header.content)  # the id a CLI command needs is on screen
        await pilot.press("escape", "escape", "f7")  # F7 from the prompt: the selected answer
        assert isinstance(app.screen, WhyScreen)
        assert str(app.screen.query_one("#why-text", Static).content) == text


@pytest.mark.asyncio
async def test_the_chat_says_on_start_what_was_learned_while_it_was_closed(learned, make_app):
    store = learned.store
    first = make_app(learned)
    async with first.run_test(size=SIZE) as pilot:
        await pilot.pause()
    assert not [t for t in first.toasts if "away" in t[1]]  # the first start reports nothing old

    store.db.execute(
        "INSERT INTO retrain_runs (started_at, finished_at, status, summary) VALUES (?, ?, 'failed', ?)",
        [
            "2026-11-21T03:00:00+00:00",
            "2026-11-21T03:01:00+00:00",
            json.dumps({"error": "The disk is full."}),
        ],
    )
    store.db.conn.commit()
    second = make_app(learned)
    async with second.run_test(size=SIZE) as pilot:
        await pilot.pause()
    assert (
        "error",
        "The last retrain (2026-11-21 03:01 UTC) failed: The disk is full. F6 shows the report.",
    ) in (second.toasts)
    third = make_app(learned)
    async with third.run_test(size=SIZE) as pilot:
        await pilot.pause()
    assert not [t for t in third.toasts if "retrain" in t[1]]  # said once


@pytest.mark.asyncio
async def test_overnight_learning_from_the_palette(seeded, make_app, tmp_path, monkeypatch):
    # A stand-in crontab with its CLI, on PATH; HOME in tmp_path: the real crontab is never touched.
    tools = tmp_path / "bin"
    tools.mkdir()
    table = tmp_path / "crontab"
    (tools / "crontab").write_text(
        '#!/bin/sh\ncase "$1" in\n  -l) [ -f "$T" ] || exit 1; cat "$T" ;;\n  -r) rm -f "$T" ;;\n'
        '  -) cat > "$T" ;;\nesac\n'
    )
    (tools / "crontab").chmod(0o755)
    monkeypatch.setenv("T", str(table))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    monkeypatch.setattr("uno_local.schedule.choose_backend", lambda name="auto": "cron")
    app = make_app(seeded)
    async with app.run_test(size=SIZE) as pilot:
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Overnight learning: on", "Overnight learning: off", "Overnight learning: status"} <= set(
            commands
        )
        await app.run_action("schedule('on')")
        await pilot.pause()
        assert "schedule run" in table.read_text() and table.read_text().startswith("0 3 * * * ")
        assert app.toasts[-1] == ("information", "Overnight learning is on: every night at 03:00 (cron).")
        await app.run_action("schedule('off')")
        assert not table.exists() and app.toasts[-1][1] == "Overnight learning is off."
