"""Fixtures for the TUI tests: a core App in a temp UNO_HOME with greedy, short answers on the
session's real llama.cpp runtime, a seeded store for snapshots, and an app that records its toasts."""

from __future__ import annotations

import pytest

from tui.app import UnoApp
from tui.screenshot import seed_demo, seed_learning
from uno_local.app import App


class RecordingApp(UnoApp):
    """The real app, also keeping every toast and every streamed-text length it showed."""

    def __init__(self, core: App, **kwargs) -> None:
        super().__init__(core, cursor_blink=False, **kwargs)
        self.toasts: list[tuple[str, str]] = []
        self.shown_lengths: list[int] = []

    def notify(self, message, *, title="", severity="information", **kwargs) -> None:
        self.toasts.append((severity, str(message)))
        super().notify(message, title=title, severity=severity, **kwargs)

    async def on_answer_delta(self, event) -> None:
        await super().on_answer_delta(event)
        found = self.chat_view.query(f"#msg-{event.answer_id} Markdown")
        if found:
            self.shown_lengths.append(len(found.first().source))


@pytest.fixture
def make_app():
    """Build the real TUI app on a core App, recording its toasts (no blinking cursors)."""
    return RecordingApp


@pytest.fixture
def core(uno_home, runtime):
    """A core App on a fresh store sharing the session's model; greedy and short answers."""
    app = App.open(home=uno_home)
    app.config.generation.temperature = 0.0
    app.config.generation.top_p = 1.0
    app.config.generation.max_tokens = 24
    app.config.generation.seed = 0
    app.runtime = runtime  # the model loads once per test session, not per test
    yield app
    app.close()


@pytest.fixture
def seeded(uno_home):
    """A core App whose store holds the fixed demo conversations (no model needed)."""
    app = App.open(home=uno_home)
    seed_demo(app.store, expert_adapter="adapter-c1")
    yield app
    app.close()


@pytest.fixture
def learned(seeded, tmp_path):
    """The demo store after a (recorded) retrain: three clusters, adapter versions in the real
    registry, and the run's report. The adapter files are placeholders: nothing loads them here."""
    seed_learning(seeded, tmp_path)
    return seeded
