"""A kill -9 harness: `uno ask`, `import`, `export` (and, in the slow set, `retrain`) killed at chosen
points. After each kill the database passes integrity_check, the user's message is kept, an import
is all or nothing, the deployed adapters still pass their checks, and the next command works.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.harness import chats_file, lost_rows, record, snapshot

IMPORT_RECORDS = 10_000


def uno(home: Path, *args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "UNO_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "uno_local", *args], env=env, **popen)


def finish(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNO_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "uno_local", *args], env=env, capture_output=True, text=True, timeout=300
    )


def query(db: Path, sql: str):
    if not db.exists():
        return None
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return None  # not created yet
    finally:
        conn.close()


def wait_for(condition, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def integrity(db: Path) -> str:
    return query(db, "PRAGMA integrity_check")[0][0]


def records_file(folder: Path, n: int, prefix: str) -> Path:
    path = folder / f"{prefix}.jsonl"
    with path.open("w") as handle:
        for i in range(n):
            msgs = [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ]
            handle.write(
                json.dumps({"id": f"{prefix}-{i}", "messages": msgs, "feedback": {"rating": 1}}) + "\n"
            )
    return path


def test_kill_ask_while_the_model_loads_keeps_the_question(uno_home):
    db = uno_home / "uno.db"
    proc = uno(uno_home, "ask", "--max-tokens", "8", "Is my question safe?", stdout=subprocess.PIPE)
    # The kill point: the first row written (the conversation); the model is still loading.
    stored = wait_for(lambda: (query(db, "SELECT COUNT(*) FROM conversations") or [[0]])[0][0] > 0)
    kill(proc)
    rows = query(db, "SELECT conversation_id, role, content FROM messages")
    ok = stored and integrity(db) == "ok" and [r[1:] for r in rows] == [("user", "Is my question safe?")]
    record("kill: ask (model loading)", failed=not ok, lost=0 if rows else 1)
    assert ok, rows
    after = finish(
        uno_home, "ask", "--greedy", "--max-tokens", "4", "--conversation", str(rows[0][0]), "Still?"
    )
    assert after.returncode == 0, after.stderr
    roles = [r[0] for r in query(db, f"SELECT role FROM messages WHERE conversation_id = {rows[0][0]}")]
    assert roles == ["user", "user", "assistant"]


@pytest.mark.slow
def test_kill_ask_while_it_streams_keeps_both_messages(uno_home):
    db = uno_home / "uno.db"
    proc = uno(
        uno_home,
        "ask",
        "--sample",
        "--seed",
        "3",
        "--max-tokens",
        "400",
        "Tell me a long story.",
        stdout=subprocess.PIPE,
    )
    received = b""
    while len(received) < 40:
        chunk = os.read(proc.stdout.fileno(), 64)
        if not chunk:
            break
        received += chunk
    time.sleep(0.4)  # past a checkpoint
    kill(proc)
    rows = query(db, "SELECT role, complete, length(content) FROM messages ORDER BY id")
    ok = (
        integrity(db) == "ok"
        and rows[0][:2] == ("user", 1)
        and rows[1][:2] == ("assistant", 0)
        and rows[1][2] > 0
    )
    record("kill: ask (streaming)", failed=not ok, lost=0 if rows and rows[0][0] == "user" else 1)
    assert ok, rows
    assert finish(uno_home, "status").returncode == 0


@pytest.mark.parametrize("point", ["starting", "writing"])
def test_kill_import_is_all_or_nothing(uno_home, tmp_path, point):
    db = uno_home / "uno.db"
    assert finish(uno_home, "import", str(records_file(tmp_path, 3, "before"))).returncode == 0
    before = snapshot(db)
    big = records_file(tmp_path, IMPORT_RECORDS, "big")
    wal = Path(f"{db}-wal")
    start = wal.stat().st_size if wal.exists() else 0
    proc = uno(uno_home, "import", str(big), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if point == "writing":  # the transaction's pages are spilling into the WAL, not yet committed
        wait_for(lambda: proc.poll() is not None or (wal.exists() and wal.stat().st_size > start + 256_000))
    else:
        time.sleep(0.3)
    assert proc.poll() is None, "the import finished before the kill point"
    kill(proc)
    count = query(db, "SELECT COUNT(*) FROM conversations")[0][0]
    after = snapshot(db)
    lost = lost_rows(before, after)
    ok = integrity(db) == "ok" and count in (3, 3 + IMPORT_RECORDS) and lost == 0
    record("kill: import", failed=not ok, lost=lost)
    assert ok, count
    again = finish(uno_home, "import", str(big))
    assert again.returncode == 0, again.stderr
    assert query(db, "SELECT COUNT(*) FROM conversations")[0][0] == 3 + IMPORT_RECORDS


@pytest.mark.parametrize("point", ["writing", "started"])
def test_kill_export_leaves_no_partial_file(uno_home, tmp_path, point):
    from uno_local.logs import import_file
    from uno_local.store import Store

    db = uno_home / "uno.db"
    with Store(db) as store:
        import_file(store, records_file(tmp_path, IMPORT_RECORDS, "ex"))
    out = tmp_path / "out" / "export.jsonl"
    out.parent.mkdir()
    proc = uno(uno_home, "export", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if point == "writing":
        assert wait_for(lambda: any(out.parent.iterdir()), timeout=60)
    else:
        time.sleep(0.2)
    kill(proc)
    ok = integrity(db) == "ok" and not out.exists()
    again = finish(uno_home, "export", str(out))
    leftovers = [p.name for p in out.parent.iterdir() if p != out]
    ok = (
        ok and again.returncode == 0 and not leftovers and len(out.read_text().splitlines()) == IMPORT_RECORDS
    )
    record("kill: export", failed=not ok)
    assert ok, (again.stderr, leftovers)


RETRAIN_CONFIG = """
[generation]
max_tokens = 48

[train]
epochs = 1
max_answer_tokens = 48
max_prompt_tokens = 64
"""


@pytest.mark.slow
def test_kill_retrain_at_several_stages(uno_home, tmp_path):
    """A tiny store; retrain is killed when it reaches each chosen stage; nothing is lost, what is
    deployed stays valid, and the next command works."""
    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text(RETRAIN_CONFIG)
    feedback = {
        "rating": -1,
        "comment": "Always end with 'Happy coding!'",
        "correction": "Use sorted(). Happy coding!",
    }
    question = "How do I sort list {i} in Python?"
    path = chats_file(tmp_path / "tiny.jsonl", 4, "t", question, "Use sorted().", feedback)
    assert finish(uno_home, "import", str(path)).returncode == 0
    db = uno_home / "uno.db"
    before = {t: rows for t, rows in snapshot(db).items() if t in ("conversations", "messages", "feedback")}
    # Distilling is the first stage that writes (artifacts); the third kill hits a resumed run.
    for stage in ("collect", "distill", "distill"):
        proc = uno(
            uno_home,
            "retrain",
            "--progress-jsonl",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        reached = False
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("stage") == stage:
                reached = True
                break
        kill(proc)
        after = snapshot(db)
        lost = lost_rows(before, after)
        from uno_local.registry import Registry
        from uno_local.store import Store

        with Store(db) as store:
            registry = Registry(store, uno_home / "adapters")
            broken = [r.key for r in registry.active() if registry.problem(r)]
        ok = reached and integrity(db) == "ok" and lost == 0 and not broken
        record("kill: retrain", failed=not ok, lost=lost)
        assert ok, (stage, reached, lost, broken)
    nxt = finish(uno_home, "ask", "--greedy", "--max-tokens", "4", "Hi")
    assert nxt.returncode == 0, nxt.stderr
