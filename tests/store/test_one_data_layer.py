"""All SQL on the app's database goes through the store (`uno_local/store/`): no other module of the
product runs a statement of its own."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Not the app's database: llm's own logs.db, read-only; the screenshot tool seeds a demo store with
# fixed times, as a test fixture would.
OTHER_DATABASES = {"uno_local/imports/llm_logs.py", "tui/screenshot.py"}
SQL_CALL = re.compile(r"\.(execute|executemany|executescript)\(|\bstore\.db\b|\.conn\b")


def test_only_the_store_runs_sql():
    offenders = []
    for folder in ("uno_local", "tui", "backends"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name.startswith("uno_local/store/") or name in OTHER_DATABASES:
                continue
            offenders += [
                f"{name}:{n}"
                for n, line in enumerate(path.read_text().splitlines(), 1)
                if SQL_CALL.search(line)
            ]
    assert offenders == []
