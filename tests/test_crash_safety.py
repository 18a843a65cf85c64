"""Killing the process mid-answer loses nothing: the user's message and the partial answer survive."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from uno_local.store import Store


def saved_answer_chars(db: Path) -> int:
    """How much of the answer the running process has saved so far (read-only, beside its writes)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        row = conn.execute("SELECT max(length(content)) FROM messages WHERE role = 'assistant'").fetchone()
    return row[0] or 0


def test_kill_during_streamed_answer_keeps_conversation(uno_home):
    env = {**os.environ, "UNO_HOME": str(uno_home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uno_local",
            "ask",
            "--sample",
            "--seed",
            "1",
            "--max-tokens",
            "4000",
            "Write a very long story about a dragon who learns to cook.",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # Wait until enough text has streamed, then kill without any chance to clean up.
    received = b""
    deadline = time.monotonic() + 120
    while len(received) < 200 and time.monotonic() < deadline:
        chunk = os.read(proc.stdout.fileno(), 64)
        if not chunk:
            break
        received += chunk
    # Until a checkpoint (every chat.CHECKPOINT_SECONDS) has saved 100 characters: a fixed sleep missed it
    # on a loaded machine. Then kill without any chance to clean up.
    while saved_answer_chars(uno_home / "uno.db") < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(received) >= 200, proc.stderr.read().decode()

    with Store(uno_home / "uno.db") as store:
        (conv,) = store.list_conversations()
        user, answer = store.messages(conv.id)
        assert user.content.startswith("Write a very long story")
        assert answer.role == "assistant" and answer.complete is False
        assert len(answer.content) >= 100
        assert received.decode(errors="ignore")[:50].strip()[:20] in answer.content
        assert store.counts()["incomplete"] == 1

    # The conversation can go on after a restart; the partial answer stays, marked incomplete.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uno_local",
            "ask",
            "--greedy",
            "--max-tokens",
            "10",
            "--conversation",
            str(conv.id),
            "Shorter please.",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    with Store(uno_home / "uno.db") as store:
        roles = [(m.role, m.complete) for m in store.messages(conv.id)]
        assert roles == [("user", True), ("assistant", False), ("user", True), ("assistant", True)]


def _cli(*args: str):
    from click.testing import CliRunner

    from uno_local.cli import cli

    return CliRunner().invoke(cli, list(args))


def test_a_failed_ask_keeps_the_question(uno_home, tmp_path):
    """Issue 16, item 3: the question is stored with its conversation before the model loads."""
    result = _cli("--model", str(tmp_path / "missing.gguf"), "ask", "Where did my question go?")
    assert result.exit_code == 1 and "Model file not found" in result.stderr
    with Store(uno_home / "uno.db") as store:
        (conv,) = store.list_conversations()
        (question,) = store.messages(conv.id)
        assert (question.role, question.content) == ("user", "Where did my question go?")


def test_a_question_longer_than_the_context_is_one_sentence(uno_home):
    """Issue 16, item 9: refused before an answer row exists; the question itself is kept."""
    question = "Please summarise this. " + "word " * 6000
    result = _cli("--ctx", "2048", "ask", "--max-tokens", "8", question)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "2,048-token context window" in result.stderr
    with Store(uno_home / "uno.db") as store:
        (conv,) = store.list_conversations()
        assert [(m.role, m.content) for m in store.messages(conv.id)] == [("user", question)]


def test_a_long_history_is_trimmed_oldest_first(runtime):
    long_turn = "history " * 300
    history = [{"role": "system", "content": "Be brief."}]
    for i in range(12):
        history += [{"role": "user", "content": f"{i} {long_turn}"}, {"role": "assistant", "content": "ok"}]
    history.append({"role": "user", "content": "And now?"})
    kept = runtime.fit(history)
    assert kept[0] == history[0] and kept[-1] == history[-1]
    assert 3 < len(kept) < len(history) and kept[1:] == history[-(len(kept) - 1) :]


def test_a_context_too_small_is_one_sentence(uno_home):
    result = _cli("--ctx", "16", "ask", "hi")
    assert result.exit_code == 1 and "model.n_ctx must be int, at least 256; got 16" in result.stderr
    assert result.stderr.count("\n") == 1
