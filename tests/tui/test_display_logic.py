"""Table-driven tests of the TUI's pure helpers: feedback line and toggle, corrections, route and
status lines, key labels and conversation titles."""

from __future__ import annotations

import pytest

from tui.answer import LiveAnswer
from tui.app import title_from
from tui.chat_view import route_text
from tui.feedback import correction_result, feedback_line, toggled_rating
from tui.help import binding_rows, key_label
from tui.sidebar import search_hit, snippet_around
from tui.status import Status, status_text, tokens_per_s
from uno_local.store import Feedback, Message


def fb(rating=None, comment=None, correction=None) -> Feedback:
    return Feedback(1, rating, comment, correction, "t", "t")


def answer(**fields) -> Message:
    return Message(7, "u", 1, "assistant", "text", "t", **fields)


@pytest.mark.parametrize(
    ("current", "pressed", "expected"),
    [(None, 1, 1), (1, 1, None), (-1, 1, 1), (None, -1, -1), (-1, -1, None), (1, -1, -1)],
)
def test_rating_toggles(current, pressed, expected):
    assert toggled_rating(current, pressed) == expected


@pytest.mark.parametrize(
    ("feedback", "line"),
    [
        (None, ""),
        (fb(), ""),
        (fb(1), "👍"),
        (fb(-1, "too  long\nreally"), "👎  comment: too long really"),
        (fb(None, None, "better"), "✎ corrected"),
        (fb(1, "x" * 80, "y"), "👍  comment: " + "x" * 80 + "  ✎ corrected"),  # whole: the widget wraps
    ],
)
def test_feedback_line(feedback, line):
    assert feedback_line(feedback) == line


@pytest.mark.parametrize(
    ("edited", "original", "stored"),
    [("Paris.", "Lyon.", "Paris."), ("Lyon.\n", "Lyon.", None), ("   ", "Lyon.", None)],
)
def test_correction_result(edited, original, stored):
    assert correction_result(edited, original) == stored


@pytest.mark.parametrize(
    ("fields", "streaming", "line"),
    [
        ({"route": "base"}, False, "base model"),
        ({"route": None}, False, "base model"),
        ({"route": "expert", "adapter": "c3"}, False, "expert adapter c3"),
        ({"route": "reflective"}, False, "reflective (critique and revise)"),
        ({"route": "base", "complete": False}, False, "base model · stopped, incomplete"),
        ({"route": "base", "complete": False}, True, "base model · writing…"),
    ],
)
def test_route_text(fields, streaming, line):
    assert route_text(answer(**fields), streaming=streaming) == line


def test_status_line_speed_comes_from_stored_counts():
    timed = answer(completion_tokens=11, ttft_ms=100.0, duration_ms=1100.0, route="base")
    assert tokens_per_s(timed) == pytest.approx(10.0)
    assert status_text(Status("M", timed)) == "M │ 10.0 tok/s │ base model │ F1 keys"
    assert status_text(Status("M", None, "writing…")) == "M │ – tok/s │ no answer yet │ writing… │ F1 keys"
    assert tokens_per_s(answer(completion_tokens=None)) is None


def test_status_line_while_streaming_and_when_narrow():
    partial = answer(route="base", complete=False)  # the row of an answer being written
    live = Status("SmolLM2-135M-Instruct.Q4_1", partial, "writing… (Esc stops)", True, 21.04)
    assert (
        status_text(live)
        == "SmolLM2-135M-Instruct.Q4_1 │ 21.0 tok/s │ base model │ writing… (Esc stops) │ F1 keys"
    )
    # Narrower: the key hint goes first, then the model's name, then the route; nothing is cut.
    assert (
        status_text(live, 76) == "SmolLM2-135M-Instruct.Q4_1 │ 21.0 tok/s │ base model │ writing… (Esc stops)"
    )
    assert status_text(live, 50) == "21.0 tok/s │ base model │ writing… (Esc stops)"
    assert status_text(live, 36) == "21.0 tok/s │ writing… (Esc stops)"
    assert status_text(Status("M", partial)) == "M │ – tok/s │ base model · stopped, incomplete │ F1 keys"


def test_live_speed_counts_pieces_after_the_first():
    live = LiveAnswer(1)
    assert live.tokens_per_s() is None
    for at in (10.0, 10.5, 11.0, 12.0):
        live.add("x", at=at)
    assert live.tokens_per_s() == pytest.approx(3 / 2.0)


def test_search_hit_needs_every_word_in_any_order():
    messages = [
        Message(1, "u", 1, "user", "How long do I boil an egg?", "t"),
        Message(
            2, "u", 1, "assistant", "Nine minutes.", "t", feedback=fb(-1, None, "Boil the egg for 7 minutes.")
        ),
    ]
    assert search_hit(messages, "egg boil").message_id == 1
    assert search_hit(messages, "7 minutes boil").message_id == 2  # all three only in the correction
    assert search_hit(messages, "minutes 7").message_id == 2  # found in the correction
    assert search_hit(messages, "title only").message_id is None
    assert snippet_around("a " * 40 + "needle here", "needle", 23) == "…a a a a a a needle here"
    assert snippet_around("a " * 40 + "needle here", "needle", 20) == "…a a a a a a needle h…"


@pytest.mark.parametrize(
    ("key", "label"),
    [("f1", "F1"), ("question_mark", "?"), ("ctrl+up", "ctrl+↑"), ("plus", "+"), ("alt+enter", "alt+Enter")],
)
def test_key_label(key, label):
    assert key_label(key) == label


def test_binding_rows_join_keys_and_skip_system_bindings():
    from textual.binding import Binding

    rows = binding_rows([Binding("a,b", "x", "Do x"), Binding("c", "y", "hidden", system=True)])
    assert [(r.keys, r.description) for r in rows] == [("a / b", "Do x")]


@pytest.mark.parametrize(
    ("text", "title"),
    [("  Hello\nworld", "Hello"), ("a   b", "a b"), ("x" * 50, "x" * 39 + "…")],
)
def test_title_from_first_message(text, title):
    assert title_from(text) == title


def test_the_report_shows_at_most_three_heldout_questions_and_what_was_retired():
    from tui.retrain_view import report_text
    from uno_local.store.learning import RetrainRun

    example = {"query": "q?", "before": "old\nanswer", "after": "new " * 60}
    clusters = [
        {"label": k, "size": 4, "gap": 0.1, "route": "expert", "examples": [example] * 2} for k in (0, 1)
    ]
    summary = {
        "logs": 8,
        "seconds": 3,
        "deployed": ["expert-c0@v2"],
        "retired": ["expert-c0@v1"],
        "clusters": clusters,
    }
    text = report_text(RetrainRun(1, "2026-01-01T03:00", "2026-01-01T03:01", "finished", "deploy", summary))
    assert "Retired (trained on feedback you removed): expert-c0@v1." in text
    assert text.count("    before: old answer") == 3 and text.count("  c1 · q?") == 1
    assert max(len(line) for line in text.splitlines()) < 175  # one line each, shortened
