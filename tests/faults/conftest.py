"""The fault suite: prints its counts at the end, and seeds a store as a user would have it."""

from __future__ import annotations

import json

import pytest

from tests.faults.harness import COUNTS


def pytest_terminal_summary(terminalreporter) -> None:
    if not COUNTS:
        return
    terminalreporter.section("fault suite counts")
    for kind, c in sorted(COUNTS.items()):
        terminalreporter.write_line(
            f"{kind:<32} tried {c['tried']:>4}  failed {c['failed']:>3}  lost {c['lost']:>3}"
        )


@pytest.fixture
def seeded_home(uno_home):
    """A store with a few conversations and feedback, as a user would have it."""
    from uno_local.logs import import_records, parse_log_lines
    from uno_local.store import Store

    lines = [
        json.dumps(
            {
                "id": f"seed-{i}",
                "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}],
                "feedback": {"rating": 1, "comment": "good", "correction": None},
            }
        )
        for i in range(5)
    ]
    with Store(uno_home / "uno.db") as store:
        import_records(store, parse_log_lines("\n".join(lines).encode()))
        conversation_id = store.new_conversation("chat")
        store.add_message(conversation_id, "user", "hello there")
        store.add_message(conversation_id, "assistant", "hi!")
    return uno_home
