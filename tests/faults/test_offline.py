"""Offline: every network attempt (a connect, a name lookup, a datagram) raises and is counted while
the app chats, imports, exports, answers, backs up and checks itself; the count must stay 0.
The slow leg runs the real CLI inside `unshare -n` (no network interfaces): import, retrain (into
its distill stage) and ask."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tests.faults.harness import chats_file, record
from uno_local.cli import cli


@pytest.fixture
def no_network(monkeypatch):
    attempts: list[str] = []

    def refuse(name):
        def blocked(*args, **kwargs):
            attempts.append(f"{name}{args[1:2]}")
            raise OSError(f"network access attempted in an offline test: {name}")

        return blocked

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        return refuse("connect")(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket.socket, "sendto", refuse("sendto"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    return attempts


def test_the_app_makes_no_network_attempt(no_network, uno_home, tmp_path):
    source = tmp_path / "in.jsonl"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    source.write_text(json.dumps({"id": "1", "messages": msgs, "feedback": {"rating": 1}}) + "\n")
    runner = CliRunner()
    steps = [
        ["import", str(source)],
        ["ask", "--greedy", "--max-tokens", "4", "Say hi."],
        ["export", str(tmp_path / "out.jsonl")],
        ["backup", str(tmp_path / "copy.db")],
        ["doctor"],
        ["status"],
        ["adapters"],
    ]
    for args in steps:
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.stderr, result.exception)
    # chat: the TUI's path, one turn through ChatService
    from uno_local.app import App

    app = App.open()
    try:
        conversation_id = app.store.new_conversation("offline")
        app.chat.send(conversation_id, "One more?", app.settings(greedy=True, max_tokens=4)).run()
    finally:
        app.close()
    record("env: offline (sockets patched)", failed=bool(no_network))
    assert no_network == []


@pytest.mark.slow
def test_retrain_and_ask_inside_a_network_namespace(uno_home, tmp_path):
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not allowed here (needs root or user namespaces)")
    from tests.faults.test_kill import RETRAIN_CONFIG

    uno_home.mkdir(parents=True, exist_ok=True)
    (uno_home / "uno.toml").write_text(RETRAIN_CONFIG)
    feedback = {"rating": -1, "correction": "Apple. Enjoy!"}
    path = chats_file(tmp_path / "tiny.jsonl", 6, "o", "Name a fruit, number {i}.", "Apple.", feedback)
    env = {**os.environ, "UNO_HOME": str(uno_home)}

    def offline(*args: str, **kwargs):
        return subprocess.Popen([unshare, "-n", sys.executable, "-m", "uno_local", *args], env=env, **kwargs)

    assert offline("import", str(path)).wait(timeout=120) == 0
    # retrain: through collect and into distill (the model generating) with no network interface;
    # the whole retrain would take longer than the slow set allows on a shared 2-core machine.
    proc = offline(
        "retrain", "--progress-jsonl", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    stages = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "distill" not in stages:
        line = proc.stderr.readline()
        if not line:
            break
        with contextlib.suppress(ValueError):
            stages.append(json.loads(line).get("stage"))
    proc.kill()
    proc.wait(timeout=30)
    record("env: offline (unshare -n)", failed="distill" not in stages)
    assert "distill" in stages, stages
    ask = offline(
        "ask",
        "--greedy",
        "--max-tokens",
        "4",
        "Name a fruit.",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = ask.communicate(timeout=300)
    record("env: offline (unshare -n)", failed=ask.returncode != 0)
    assert ask.returncode == 0, err[-2000:]
