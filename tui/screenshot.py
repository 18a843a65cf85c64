"""README screenshots of the real app on a seeded store: `python -m tui.screenshot OUTDIR`
-> OUTDIR/screenshot-chat.svg and OUTDIR/screenshot-help.svg.

`seed_demo` is also the fixed data of the snapshot tests, so the pictures and the tests agree.
"""

from __future__ import annotations

import asyncio
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


async def save_screenshots(outdir: Path) -> list[Path]:
    """Run the app headless on a seeded temp store and save the chat and help screens."""
    from tui.app import UnoApp

    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        core = App.open(home=Path(home))
        try:
            seed_demo(core.store)
            app = UnoApp(core, cursor_blink=False)
            async with app.run_test(size=SIZE) as pilot:
                await pilot.pause()
                await pilot.press("ctrl+up")  # select the last answer: shows its feedback and route
                await pilot.pause()
                chat = app.save_screenshot("screenshot-chat.svg", str(outdir))
                await pilot.press("f1")
                await pilot.pause()
                help_ = app.save_screenshot("screenshot-help.svg", str(outdir))
        finally:
            core.close()
    return [Path(chat), Path(help_)]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0]) if args else Path("assets")
    for path in asyncio.run(save_screenshots(outdir)):
        print(path)


if __name__ == "__main__":
    main()
