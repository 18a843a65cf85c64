"""README screenshots of the real app on a seeded store: `python -m tui.screenshot OUTDIR`
-> OUTDIR/screenshot-{chat,help,feedback,rules,adapters,retrain,why}.svg.

`seed_demo` is also the fixed data of the snapshot tests, so the pictures and the tests agree.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from uno_local.app import App
from uno_local.store import Store

SIZE = (110, 34)
STAMP = "2026-11-20T09:{:02d}:00.000000+00:00"
STATS = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "prompt_tokens": 41, "ttft_ms": 120.0}

DEMO = [
    (
        "Python: list or tuple?",
        [
            ("When should I use a tuple instead of a list in Python?", None),
            (
                "Use a **tuple** when the values belong together and should not change, "
                "and a **list** when you will add, remove or reorder items.\n\n"
                "- tuples can be dictionary keys; lists cannot\n"
                "- tuples are a little smaller and faster to create\n\n"
                "```python\npoint = (3, 4)      # fixed pair\nqueue = [1, 2, 3]   # grows and shrinks\n```",
                {"rating": 1, "comment": "Short and with an example: exactly right."},
            ),
            ("And which one does `sorted()` return?", None),
            (
                "`sorted()` always returns a new **tuple** with the items in order.",
                {
                    "rating": -1,
                    "comment": "Wrong: it returns a list.",
                    "correction": "`sorted()` always returns a new **list**, whatever iterable you pass in.",
                },
            ),
        ],
    ),
    (
        "Packing for a rainy hike",
        [
            ("What should I pack for a day hike in the rain?", None),
            ("A rain jacket, spare socks, a dry bag for your phone, snacks and water.", None),
        ],
    ),
    (
        "Birthday poem for Ana",
        [
            ("Write a two-line birthday poem for Ana.", None),
            ("Another year, another sun; happy birthday, Ana, the brightest one!", {"rating": 1}),
        ],
    ),
]


def tokens(text: str) -> int:
    """A plausible token count for demo answers (about 4 characters per token)."""
    return max(8, len(text) // 4)


def seed_demo(store: Store, *, expert_adapter: str | None = None) -> int:
    """Fill `store` with fixed conversations and feedback; returns the id of the most recent one.

    With `expert_adapter`, the first answer is recorded as routed to that adapter (display tests).
    """
    newest = 0
    minute = 0
    for title, turns in reversed(DEMO):
        conversation_id = store.new_conversation(title)
        for index, (text, feedback) in enumerate(turns):
            minute += 1
            if index % 2 == 0:
                store.add_message(conversation_id, "user", text, created_at=STAMP.format(minute))
                continue
            routed = expert_adapter and title == DEMO[0][0] and index == 1
            message_id = store.add_message(
                conversation_id,
                "assistant",
                text,
                created_at=STAMP.format(minute),
                route="expert" if routed else "base",
                adapter=expert_adapter if routed else None,
                completion_tokens=tokens(text),
                duration_ms=STATS["ttft_ms"] + (tokens(text) - 1) * 1000 / 108,
                **STATS,
            )
            if feedback:
                store.set_feedback(message_id, **feedback)
        newest = conversation_id
    return newest


def seed_learning(core: App, scratch: Path) -> None:
    """After `seed_demo`: what a retrain leaves behind, fixed: three clusters (Expert, Reflective,
    vetoed), adapter versions in the real registry (placeholder files: nothing loads them) and the
    run's report. The learning views' screenshots and snapshot tests show this."""
    from uno_local.retrain.state import RetrainReport
    from uno_local.store.learning import ClusterRow, replace_clusters

    store = core.store
    answers = [
        m.id for c in store.list_conversations() for m in store.messages(c.id) if m.role == "assistant"
    ]
    python_answers = [m.id for m in store.messages(store.list_conversations()[0].id) if m.role == "assistant"]
    gguf = scratch / "adapter.gguf"
    for payload in (b"v1", b"v2"):
        gguf.write_bytes(payload)
        core.registry.deploy(
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
    core.registry.deploy(
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
    with store.write() as db:
        db.execute(
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
                "examples": [
                    {
                        "query": "Is a dict ordered in Python?",
                        "before": "No, dictionaries are unordered collections of keys and values.",
                        "after": "Yes: since Python 3.7 a dict keeps insertion order.\n\n"
                        "```python\nd = {'b': 1, 'a': 2}\nlist(d)  # ['b', 'a']\n```",
                    },
                    {
                        "query": "How do I reverse a list?",
                        "before": "You can reverse a list in many ways depending on your needs.",
                        "after": "`items.reverse()` in place, or `items[::-1]` for a reversed copy.",
                    },
                ],
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
    with store.write() as db:
        db.execute(
            "INSERT INTO retrain_runs (started_at, finished_at, status, stage, summary) VALUES (?, ?, ?, ?, ?)",
            [
                "2026-11-20T02:39:00+00:00",
                "2026-11-20T03:00:00+00:00",
                "finished",
                "deploy",
                json.dumps(report.as_dict()),
            ],
        )


async def save_screenshots(outdir: Path) -> list[Path]:
    """Run the app headless on a seeded temp store and save the chat, help and learning views."""
    from tui.app import UnoApp

    outdir.mkdir(parents=True, exist_ok=True)
    shots = [
        ("screenshot-chat.svg", ["ctrl+up"]),  # the last answer selected: its feedback and route
        ("screenshot-help.svg", ["f1"]),
        ("screenshot-feedback.svg", ["f3"]),
        ("screenshot-rules.svg", ["f4"]),
        ("screenshot-adapters.svg", ["f5"]),
        ("screenshot-retrain.svg", ["f6"]),
        ("screenshot-why.svg", ["ctrl+up", "up", "up", "enter", "w"]),
    ]
    saved = []
    with tempfile.TemporaryDirectory() as home:
        core = App.open(home=Path(home) / "data")
        try:
            seed_demo(core.store, expert_adapter="expert-c1")
            seed_learning(core, Path(home))
            for name, keys in shots:
                app = UnoApp(core, cursor_blink=False)
                async with app.run_test(size=SIZE) as pilot:
                    await pilot.pause()
                    await pilot.press(*keys)
                    await pilot.pause()
                    saved.append(Path(app.save_screenshot(name, str(outdir))))
        finally:
            core.close()
    return saved


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0]) if args else Path("assets")
    for path in asyncio.run(save_screenshots(outdir)):
        print(path)


if __name__ == "__main__":
    main()
