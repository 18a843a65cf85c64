"""`uno import` of Open WebUI's chat export and feedback export (fixtures in data/, built to the
structure of Open WebUI's models: backend/open_webui/models/chats.py and feedbacks.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.store import Store

DATA = Path(__file__).parent / "data"
CHATS = DATA / "openwebui-chats.json"
FEEDBACK = DATA / "openwebui-feedback.json"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def answers(home) -> dict[str, object]:
    with Store(home / "uno.db") as store:
        return {log.answer: log for log in store.logs()}


def test_chat_export_imports_tree_ratings_comments_and_regenerated_pairs(uno_home):
    dry = run("import", str(CHATS), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would import 4 logs" in dry.stdout and "(openwebui; 3 with feedback" in dry.stdout
    result = run("import", str(CHATS))
    assert result.exit_code == 0 and "Imported 4 logs" in result.stdout
    logs = answers(uno_home)
    lyon = logs["The capital of France is Lyon."]
    assert (lyon.feedback.rating, lyon.feedback.comment) == (-1, "Not factually correct: Paris, not Lyon.")
    assert lyon.feedback.correction == "The capital of France is Paris."  # the regenerated sibling rated up
    paris = logs["The capital of France is Paris."]
    assert (paris.feedback.rating, paris.feedback.correction) == (1, None)
    follow = logs["About 2.1 million people live in Paris proper."]
    assert follow.feedback is None
    assert [m["content"] for m in follow.messages[:-1]] == [
        "What is the capital of France?",
        "The capital of France is Paris.",
        "And its population?",
    ]
    haiku = next(log for text, log in logs.items() if text.startswith("Soft rain"))
    assert haiku.messages[0] == {"role": "system", "content": "You are a poet."}
    assert (haiku.feedback.rating, haiku.feedback.comment) == (1, "Lovely, keep this style.")
    assert haiku.created_at.startswith("2024-12-04")


def test_feedback_export_imports_the_rated_answer_once(uno_home):
    result = run("import", str(FEEDBACK))
    assert result.exit_code == 0, result.output
    assert "Imported 1 logs" in result.stdout and "openwebui-feedback" in result.stdout
    (log,) = answers(uno_home).values()
    assert log.answer == "The capital of France is Lyon."
    assert (log.feedback.rating, log.feedback.comment) == (-1, "Not factually correct: Paris, not Lyon.")
    assert log.query == "What is the capital of France?"
    # the chat export holds the same answer: it is not added twice
    again = run("import", str(CHATS))
    assert "Imported 3 logs" in again.stdout and "1 already present" in again.stdout


def _chat_mutations():
    def drop(key):
        return lambda chats: chats[0]["chat"]["history"]["messages"]["a1"].pop(key)

    def put(key, value, message="a1"):
        return lambda chats: chats[0]["chat"]["history"]["messages"][message].__setitem__(key, value)

    return {
        "no role": (drop("role"), "message a1 has no role"),
        "content not text": (put("content", ["x"]), "message a1 has no text content"),
        "unknown parent": (put("parentId", "zz"), "names a parent zz"),
        "bad rating": (put("annotation", {"rating": 5}), "has a rating of 5"),
        "annotation not an object": (put("annotation", "good"), "annotation that is not an object"),
        "cycle": (put("parentId", "u2", "u1"), "is its own ancestor"),
        "no history": (
            lambda chats: chats[1]["chat"].pop("history"),
            'chat 2 (9e4b0f13-chat-2) has no "chat.history',
        ),
        "not an object": (lambda chats: chats.append(3), "chat 3 is not an object"),
    }


@pytest.mark.parametrize("name", list(_chat_mutations()))
def test_malformed_chat_exports_are_refused_whole(name, tmp_path, uno_home):
    mutate, sentence = _chat_mutations()[name]
    chats = json.loads(CHATS.read_text())
    mutate(chats)
    bad = tmp_path / "chats.json"
    bad.write_text(json.dumps(chats))
    result = run("import", str(bad), "--format", "openwebui")
    assert result.exit_code == 1
    assert sentence in result.output and "nothing was imported" in result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert Store(uno_home / "uno.db").counts()["messages"] == 0


@pytest.mark.parametrize(
    "mutate, sentence",
    [
        (lambda f: f[0].pop("snapshot"), 'has no "snapshot.chat"'),
        (lambda f: f[0]["meta"].__setitem__("message_id", "u1"), "rates message u1, which its snapshot"),
        (lambda f: f[0]["data"].__setitem__("rating", "great"), "has a rating of 'great'"),
        (lambda f: f[0].__setitem__("data", None), 'has no "data" object'),
    ],
)
def test_malformed_feedback_exports_are_refused_whole(mutate, sentence, tmp_path, uno_home):
    feedback = json.loads(FEEDBACK.read_text())
    feedback.append(copy.deepcopy(feedback[0]))
    mutate(feedback)
    bad = tmp_path / "feedback.json"
    bad.write_text(json.dumps(feedback))
    result = run("import", str(bad), "--format", "openwebui-feedback")
    assert result.exit_code == 1, result.output
    assert "feedback 1 (b6f7e2a0-feedback-1)" in result.output and sentence in result.output
    assert Store(uno_home / "uno.db").counts()["messages"] == 0


def test_wrong_format_choice_is_one_sentence(uno_home):
    result = run("import", str(CHATS), "--format", "openwebui-feedback")
    assert result.exit_code == 1 and 'has no "meta.message_id"' in result.output
