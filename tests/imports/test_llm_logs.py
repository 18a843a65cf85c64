"""`uno import` of simonw/llm's logs.db: one written by the real `llm` CLI, and malformed ones."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.store import Store


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# The real `llm` CLI, its SmolLM2 plugin loading llama.cpp in its own process: with the guard uno applies
# to its own llama.cpp models (`prepare_llama_cpp`: no AMX buffers where they crash), or it segfaults there.
LLM = [
    sys.executable,
    "-c",
    "from backends.llama_runtime import prepare_llama_cpp; prepare_llama_cpp(); "
    "from llm.cli import cli; cli(prog_name='llm')",
]


@pytest.fixture(scope="module")
def llm_logs(tmp_path_factory) -> Path:
    """A logs.db written by `llm -m SmolLM2`: one prompt and its follow-up in the same conversation."""
    user_path = tmp_path_factory.mktemp("llm-user")
    env = {**os.environ, "LLM_USER_PATH": str(user_path)}
    for args in (["-m", "SmolLM2", "-s", "Answer in one word.", "Capital of France?"], ["-c", "Thanks!"]):
        result = subprocess.run([*LLM, *args], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    return user_path / "logs.db"


@pytest.mark.slow  # two real generations through the llm CLI (about 30 s)
def test_real_llm_logs_import_with_counts_and_follow_up(llm_logs, uno_home):
    dry = run("import", str(llm_logs), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would import 2 logs" in dry.stdout and "(llm; 1 with feedback, 0 already present)" in dry.stdout
    assert not (uno_home / "uno.db").exists() or Store(uno_home / "uno.db").counts()["messages"] == 0

    result = run("import", str(llm_logs))
    assert result.exit_code == 0, result.output
    assert "Imported 2 logs" in result.stdout
    with Store(uno_home / "uno.db") as store:
        logs = list(store.logs())
        assert [log.query for log in logs] == ["Capital of France?", "Thanks!"]
        first, second = logs
        assert first.messages[0] == {"role": "system", "content": "Answer in one word."}
        assert first.feedback.comment == "Thanks!"  # the follow-up: implicit feedback
        assert second.feedback is None and len(second.messages) == 5
        assert first.answer.strip() and second.messages[:3] == first.messages
    again = run("import", str(llm_logs))
    assert "Imported 0 logs" in again.stdout and "2 already present" in again.stdout


@pytest.fixture(scope="module")
def empty_llm_db(tmp_path_factory) -> Path:
    """An empty logs.db with llm's own current schema (its migrations), for hand-made rows."""
    from llm.migrations import migrate

    path = tmp_path_factory.mktemp("llm-schema") / "logs.db"
    migrate(sqlite_utils.Database(path))
    return path


def _add_turn(db, turn: str, chain: list[tuple[str, str, str]]) -> None:
    parent = None
    for hash_, role, text in chain:
        db.execute(
            "INSERT OR IGNORE INTO messages (hash, parent_hash, role) VALUES (?, ?, ?)", [hash_, parent, role]
        )
        db.execute(
            "INSERT OR IGNORE INTO parts (message_hash, position, type, text) VALUES (?, 0, 'text', ?)",
            [hash_, text],
        )
        parent = hash_
    db.execute(
        "INSERT INTO turns (id, tip_message_hash, model, datetime_utc) VALUES (?, ?, 'm', ?)",
        [turn, chain[-1][0], "2026-01-01T00:00:00+00:00"],
    )
    db.commit()


GREETING = [("h1", "user", "hi"), ("h2", "assistant", "hello")]


def _greeting_and_its_follow_up(empty: Path, path: Path, follow_up: list[tuple[str, str, str]]) -> Path:
    """A logs.db of llm's schema at `path`: turn t1 (hi -> hello), and turn t2 going on from it with
    `follow_up` (its messages h3, h4, ...)."""
    shutil.copy(empty, path)
    db = sqlite3.connect(path)
    try:
        _add_turn(db, "t1", GREETING)
        _add_turn(db, "t2", GREETING + follow_up)
    finally:
        db.close()
    return path


def test_tool_turn_is_refused_whole(empty_llm_db, tmp_path, uno_home):
    tool_call = [("h3", "tool", "{}"), ("h4", "assistant", "x")]
    path = _greeting_and_its_follow_up(empty_llm_db, tmp_path / "logs.db", tool_call)
    result = CliRunner().invoke(cli, ["import", str(path)])
    assert result.exit_code == 1
    assert "turn t2 holds a 'tool' message" in result.output and "nothing was imported" in result.output
    assert "Traceback" not in result.output
    assert Store(uno_home / "uno.db").counts()["messages"] == 0


def test_a_database_that_is_not_llms_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE responses (id TEXT, prompt TEXT)")
    result = CliRunner().invoke(cli, ["import", str(path)])
    assert result.exit_code == 1
    assert "is not an llm logs.db: table responses lacks" in result.output


def test_hand_made_tree_imports_with_follow_up(empty_llm_db, tmp_path, uno_home):
    louder = [("h3", "user", "louder"), ("h4", "assistant", "HELLO")]
    path = _greeting_and_its_follow_up(empty_llm_db, tmp_path / "logs.db", louder)
    assert "Imported 2 logs" in run("import", str(path), "--format", "llm").stdout
    with Store(uno_home / "uno.db") as store:
        first, second = store.logs()
    assert first.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert first.feedback.comment == "louder" and second.answer == "HELLO"
