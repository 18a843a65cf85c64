"""SVG snapshots of every screen, view and dialog on fixed data: the chat (empty, with feedback, at
80x24, searching), help, the answer's actions and its dialogs, and the learning views (100x32 unless
said, no blinking cursors, no clocks or timestamps).
Update with `pytest tests/tui/test_snapshots.py --snapshot-update` and look at the SVGs."""

from __future__ import annotations

from textual.pilot import Pilot

from tui.app import UnoApp

SIZE = (100, 32)


async def settle(pilot: Pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_empty_start_screen(snap_compare, uno_home):
    from uno_local.app import App

    core = App.open(home=uno_home)
    try:
        assert snap_compare(UnoApp(core, cursor_blink=False), terminal_size=SIZE, run_before=settle)
    finally:
        core.close()


def test_conversation_with_answers_and_feedback(snap_compare, seeded):
    # ctrl+up selects the last answer, whose feedback and route show on the status bar too.
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["ctrl+up"])


def test_help_screen(snap_compare, seeded):
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f1"])


def test_correction_editor(snap_compare, seeded):
    # The first answer has no correction yet, so the editor opens on the answer's own text.
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(
        app, terminal_size=SIZE, run_before=settle, press=["ctrl+up", "up", "up", "enter", "e"]
    )


def test_answer_actions_menu(snap_compare, seeded):
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["ctrl+up", "enter"])


def test_remove_feedback_asks_first(snap_compare, seeded):
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["ctrl+up", "enter", "x"])


def test_comment_dialog(snap_compare, seeded):
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["ctrl+up", "enter", "c"])


def test_rename_dialog(snap_compare, seeded):
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f2"])


def test_search_with_snippets(snap_compare, seeded):
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["ctrl+f", *"list tuple"])


def test_small_terminal(snap_compare, seeded):
    # 80x24: the sidebar keeps its minimum, the status bar fits its line.
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


def test_why_this_answer(snap_compare, learned):
    app = UnoApp(learned, cursor_blink=False)
    assert snap_compare(
        app, terminal_size=SIZE, run_before=settle, press=["ctrl+up", "up", "up", "enter", "w"]
    )


def test_feedback_view(snap_compare, learned):
    app = UnoApp(learned, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f3"])


def test_rules_view(snap_compare, learned):
    app = UnoApp(learned, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f4"])


def test_rules_editor(snap_compare, learned):
    app = UnoApp(learned, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f4", "e"])


def test_adapters_view(snap_compare, learned):
    app = UnoApp(learned, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f5"])


def test_delete_adapter_asks_first(snap_compare, learned):
    app = UnoApp(learned, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f5", "down", "x"])


def test_retrain_view(snap_compare, learned):
    app = UnoApp(learned, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["f6"])


def test_your_message_actions_menu(snap_compare, seeded):
    # ctrl+up selects the last answer; up moves to the question it answers.
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["ctrl+up", "up", "enter"])


def test_edit_and_resend_editor(snap_compare, seeded):
    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settle, press=["ctrl+up", "up", "enter", "e"])


def test_conversation_settings_dialog(snap_compare, seeded):
    from tui.conversation_dialogs import SettingsDialog
    from uno_local.store import ConversationSettings

    async def open_settings(pilot: Pilot) -> None:
        await settle(pilot)
        # A fixed model path: the real one depends on where the package is installed.
        settings = ConversationSettings("Answer briefly, in plain words.", 0.7)
        dialog = SettingsDialog(
            settings, "/models/SmolLM2-135M-Instruct.Q4_1.gguf", 0.2, lambda t: None, cursor_blink=False
        )
        await pilot.app.push_screen(dialog)
        await pilot.pause()

    app = UnoApp(seeded, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=open_settings)
