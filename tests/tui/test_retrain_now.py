""" "Retrain now" from the TUI: the job runs in a separate process while the chat keeps answering."""

from __future__ import annotations

import json
import time

import pytest

from tests.tui.test_chat import SIZE, answer_done, wait_for
from uno_local.logs import import_records, parse_record
from uno_local.store import Store

# A tiny, quick job: one short epoch so the background retrain finishes within the test.
TINY_TRAINING = "[train]\nepochs = 1\nmin_steps = 2\nbatch_size = 2\nlearning_rate = 0.005\n\n[generation]\nmax_tokens = 24\n"


def seed_logs(store: Store) -> None:
    records = []
    for i, dish in enumerate(["rice", "pasta", "eggs", "soup", "bread", "salad", "tea"]):
        answer = f"Cook the {dish} gently and taste it as you go."
        records.append(
            parse_record(
                {
                    "id": f"tiny-{i}",
                    "messages": [
                        {"role": "user", "content": f"How do I make {dish}?"},
                        {"role": "assistant", "content": answer},
                    ],
                    "feedback": {"rating": -1, "comment": None, "correction": answer + "\nHappy cooking!"},
                }
            )
        )
    import_records(store, records)


@pytest.mark.asyncio
async def test_retrain_now_runs_in_the_background_while_chatting(core, make_app, uno_home):
    uno_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (uno_home / "uno.toml").write_text(TINY_TRAINING)
    seed_logs(core.store)
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.retraining.startswith("retrain:") and app._retrain_proc is not None)
        proc = app._retrain_proc
        assert "ctrl+r" in json.dumps([b.key for b in app.BINDINGS])

        # Chat while the child process works: the answer streams and is stored as usual.
        await pilot.press("ctrl+n")
        for ch in "Hi":
            await pilot.press(ch)
        await pilot.press("enter")
        await answer_done(pilot)
        assert proc.poll() is None or app.retraining == "", "the chat should not wait for the retrain"
        conversation = core.store.list_conversations()[0]
        assert [m.role for m in core.store.messages(conversation.id)][-2:] == ["user", "assistant"]

        # Live progress reached the status bar, then the job finished with a summary toast.
        await wait_for(pilot, lambda: app.retraining == "", timeout=600)
        summaries = [text for _, text in app.toasts if text.startswith("Retrain finished")]
        assert summaries, app.toasts
    with Store(uno_home / "uno.db") as store:
        (status,) = store.db.execute("SELECT status FROM retrain_runs").fetchone()
        assert status == "finished"


@pytest.mark.asyncio
async def test_retrain_now_with_nothing_to_learn_says_so(core, make_app):
    app = make_app(core)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        start = time.monotonic()
        await wait_for(
            pilot,
            lambda: app.retraining == "" and bool(app.toasts) and app.toasts[-1][0] == "error",
            timeout=120,
        )
        assert "no feedback to learn from" in app.toasts[-1][1]
        assert time.monotonic() - start < 120
