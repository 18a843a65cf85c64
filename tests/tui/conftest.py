"""Fixtures for the TUI tests: a core App in a temp UNO_HOME with greedy, short answers on the
session's real llama.cpp runtime, a seeded store for snapshots, and an app that records its toasts."""

from __future__ import annotations

import json

import pytest

from tui.app import UnoApp
from tui.screenshot import seed_demo
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
    from uno_local.retrain.state import RetrainReport
    from uno_local.store.learning import ClusterRow, replace_clusters

    store = seeded.store
    answers = [
        m.id for c in store.list_conversations() for m in store.messages(c.id) if m.role == "assistant"
    ]
    python_answers = [m.id for m in store.messages(store.list_conversations()[0].id) if m.role == "assistant"]
    gguf = tmp_path / "adapter.gguf"
    for payload in (b"v1", b"v2"):
        gguf.write_bytes(payload)
        seeded.registry.deploy(
            name="expert-c1",
            kind="expert",
            gguf_file=gguf,
            peft_dir=None,
            base_model="/models/SmolLM2-135M-Instruct.Q4_1.gguf",
            sources=python_answers,
            metrics={"win_rate": 0.75, "win_rates": {"1": 0.5, "2": 0.75}},
            config={},
            cluster="1",
            backend="torch",
        )
    seeded.registry.deploy(
        name="critic-c2",
        kind="critic",
        gguf_file=gguf,
        peft_dir=None,
        base_model="/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        sources=answers[2:],
        metrics={},
        config={},
        cluster="2",
        backend="torch",
    )
    rows = [
        ClusterRow(
            1,
            [0.0],
            python_answers,
            ["Answer Python questions with a short example."],
            gap=0.31,
            route="expert",
            expert="expert-c1",
            win_rate=0.75,
            decision="shipped: epoch 2 won 3 of 4",
        ),
        ClusterRow(
            2,
            [1.0],
            answers[2:],
            ["Keep it to two lines."],
            gap=0.82,
            high_gap=True,
            route="reflective",
            critic="critic-c2",
            decision="high gap: Critic trained for the Reflective path",
        ),
        ClusterRow(
            3, [2.0], [], ["Use metric units."], gap=0.12, route="base", vetoed=True, decision="vetoed"
        ),
    ]
    for row in rows:
        row.updated_at = "2026-11-20T03:00:00.000000+00:00"
    replace_clusters(store, rows)
    store.db.execute(
        "UPDATE messages SET cluster = '1', route_reason = ? WHERE id = ?",
        [
            "Closest to cluster 1 (distance 0.21, within 0.45): its Expert adapter answered.",
            python_answers[0],
        ],
    )
    report = RetrainReport(
        logs=5,
        pairs=4,
        deployed=["expert-c1@v2", "critic-c2@v1"],
        seconds=1260.0,
        stage_seconds={"collect": 0.1, "distill": 200.0, "train": 900.0, "validate": 150.0, "deploy": 10.0},
        cached={},
        trained_tokens=1000,
        gap_skipped_tokens=0,
        backend="torch",
        clusters=[
            {
                "label": 1,
                "size": 2,
                "gap": 0.31,
                "route": "expert",
                "win_rate": 0.75,
                "decision": "shipped: epoch 2 won 3 of 4",
                "reused": False,
            },
            {
                "label": 2,
                "size": 3,
                "gap": 0.82,
                "route": "reflective",
                "win_rate": None,
                "decision": "high gap: Critic trained for the Reflective path",
                "reused": False,
            },
        ],
    )
    store.db.execute(
        "INSERT INTO retrain_runs (started_at, finished_at, status, stage, summary) VALUES (?, ?, ?, ?, ?)",
        [
            "2026-11-20T02:39:00+00:00",
            "2026-11-20T03:00:00+00:00",
            "finished",
            "deploy",
            json.dumps(report.as_dict()),
        ],
    )
    store.db.conn.commit()
    return seeded
