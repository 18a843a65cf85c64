"""Helpers of the fault suite: table snapshots, the one-sentence check and the counts it prints at
the end (tried, failed, lost per kind of fault), recorded in docs/reliability.md."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path

COUNTS: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "failed": 0, "lost": 0})


def record(kind: str, *, failed: bool = False, lost: int = 0) -> None:
    """Count one tried fault of `kind` (import fuzz, kill point, environment)."""
    COUNTS[kind]["tried"] += 1
    COUNTS[kind]["failed"] += int(failed)
    COUNTS[kind]["lost"] += lost


def chats_file(
    path: Path, n: int, prefix: str, question: str, answer: str, feedback: dict | None = None
) -> Path:
    """A JSONL file of `n` one-turn chats with ids `{prefix}{i}`: `question` (its `{i}` filled in) and
    `answer`, each with `feedback` where given."""
    with path.open("w") as handle:
        for i in range(n):
            messages = [
                {"role": "user", "content": question.format(i=i)},
                {"role": "assistant", "content": answer},
            ]
            row = {"id": f"{prefix}{i}", "messages": messages}
            if feedback is not None:
                row["feedback"] = feedback
            handle.write(json.dumps(row) + "\n")
    return path


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: two snapshots compare equal when nothing changed (SQLite's
    own sqlite_sequence, whose counters every insert moves on, is no data of the app's)."""
    conn = sqlite3.connect(db)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def lost_rows(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> int:
    """Rows present before and missing after (a row that changed counts as lost)."""
    lost = 0
    for table, rows in before.items():
        remaining = set(map(repr, after.get(table, [])))
        lost += sum(repr(row) not in remaining for row in rows)
    return lost


def one_sentence_error(stderr: str) -> bool:
    """What the user sees on failure: one line starting with "Error:", no traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in stderr
