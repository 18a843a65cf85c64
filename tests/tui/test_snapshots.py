"""SVG snapshots of the main screens on fixed data: empty start, a conversation with feedback,
the help screen and the correction editor (100x32, no blinking cursors, no clocks or timestamps).
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
