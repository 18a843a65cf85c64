"""Killing the process mid-answer loses nothing: the user's message and the partial answer survive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from uno_local.store import Store


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
    time.sleep(0.6)  # past at least one checkpoint after the last read
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
