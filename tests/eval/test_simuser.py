"""The simulated user: reproducible choices under a seed, noise 0 and 1, the exact import format."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from uno_local.eval.scenario import Scenario, load_scenario, parse_scenario
from uno_local.eval.simuser import Feedback, feedback_summary, simulate_feedback, simulate_logs, train_order
from uno_local.logs import parse_record

REPO = Path(__file__).resolve().parents[2]


def tiny(rate: float) -> Scenario:
    return parse_scenario(
        {
            "name": "tiny",
            "seed": 0,
            "topics": [
                {
                    "name": "t",
                    "rule": {
                        "text": "End with Bye.",
                        "check": {"type": "ends_with", "value": "Bye."},
                        "feedback": ["f0", "f1"],
                    },
                    "train": ["q0", "q1", "q2"],
                    "test": ["x0"],
                },
                {
                    "name": "u",
                    "rule": {"text": "Short.", "check": {"type": "max_words", "n": 2}, "feedback": ["g0"]},
                    "train": ["r0"],
                    "test": ["y0"],
                },
            ],
            "controls": ["c0"],
            "noise": {"rate": rate, "feedback": ["n0", "n1", "n2"]},
        },
        "tiny.json",
    )


def test_choices_match_hand_computed_stream() -> None:
    # random.Random(0) draws 0.844, then choice(2) -> 1, 0.040, choice(3) -> 2, 0.486, choice(3) -> 1,
    # 0.968 (no choice: the answer passes), 0.358, choice(3) -> 0. With rate 0.5 that reads:
    s = tiny(0.5)
    topic = s.topic("t")
    rng = random.Random(0)
    got = [
        simulate_feedback(s, topic, "q", a, rng) for a in ["Hi.", "Hi.\n\nBye.", "Bye.", "Ok. Bye.", "Nope"]
    ]
    assert got == [
        Feedback(-1, "f1", "Hi.\n\nBye."),
        Feedback(-1, "n2", None, noise=True),
        Feedback(-1, "n1", None, noise=True),
        Feedback(1),
        Feedback(-1, "n0", None, noise=True),
    ]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Hello there.", Feedback(-1, "f0", "Hello there.\n\nBye.")),
        ("Hello.\nBye.", Feedback(1)),
        ("", Feedback(-1, "f0", "Bye.")),
    ],
)
def test_noise_rate_zero_follows_the_rule(answer: str, expected: Feedback) -> None:
    s = tiny(0.0)
    rng = random.Random(1)  # random.Random(1): 0.134..., then choice(2) -> 0
    assert simulate_feedback(s, s.topic("t"), "q", answer, rng) == expected


def test_noise_rate_one_is_always_noise() -> None:
    s = tiny(1.0)
    rng = random.Random(3)
    got = [simulate_feedback(s, s.topic("t"), "q", a, rng) for a in ["Bye.", "nope"] * 20]
    assert all(f.rating == -1 and f.correction is None and f.noise for f in got)
    assert {f.comment for f in got} == {"n0", "n1", "n2"}


def test_records_have_the_exact_import_format() -> None:
    s = tiny(0.0)
    calls = []

    def answer_fn(pairs: list[tuple[str, str]]) -> list[str]:
        calls.append(pairs)
        return ["Sure. Bye.", "a b c", "No.", "Fine"]

    records = simulate_logs(s, answer_fn)
    assert calls == [[("t", "q0"), ("u", "r0"), ("t", "q1"), ("t", "q2")]]  # one batch, topics interleaved
    assert records[0] == {
        "id": "tiny-t-0",
        "messages": [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "Sure. Bye."}],
        "feedback": {"rating": 1, "comment": None, "correction": None},
        "created_at": "2026-01-05T09:00:00+00:00",
    }
    assert records[1]["id"] == "tiny-u-0"
    assert records[1]["feedback"] == {"rating": -1, "comment": "g0", "correction": "a b."}
    assert [r["id"] for r in records] == ["tiny-t-0", "tiny-u-0", "tiny-t-1", "tiny-t-2"]
    assert records[3]["created_at"] == "2026-01-05T09:03:00+00:00"
    for record in records:
        assert set(record) == {"id", "messages", "feedback", "created_at"}
        assert set(record["feedback"]) == {"rating", "comment", "correction"}
        datetime.fromisoformat(record["created_at"])
        parsed = parse_record(record)  # the app's own importer accepts it unchanged
        assert (parsed.uid, parsed.rating, parsed.correction) == (
            record["id"],
            record["feedback"]["rating"],
            record["feedback"]["correction"],
        )
    assert feedback_summary(records) == {"records": 4, "thumbs_up": 1, "thumbs_down": 3, "corrections": 3}


def _echo(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"About {query}: " + "it depends on a lot of things. " * 5 for _, query in pairs]


def test_same_seed_same_records_and_seed_changes_choices() -> None:
    s = load_scenario(REPO / "assets" / "eval" / "study-habits.json")
    first = simulate_logs(s, _echo)
    assert first == simulate_logs(s, _echo, seed=s.seed)
    other = simulate_logs(s, _echo, seed=s.seed + 1)
    assert [r["id"] for r in other] == [r["id"] for r in first]
    assert [r["feedback"] for r in other] != [r["feedback"] for r in first]
    assert len(first) == sum(len(t.train) for t in s.topics)
    summary = feedback_summary(first)
    # Every echo answer breaks every rule, so thumbs-down are either corrections or noise.
    assert summary["thumbs_up"] == 0 and summary["thumbs_down"] == 36
    assert 0 < 36 - summary["corrections"] < 36 * 0.4


def test_train_order_round_robin() -> None:
    s = tiny(0.0)
    assert [(t.name, i) for t, i in train_order(s)] == [("t", 0), ("u", 0), ("t", 1), ("t", 2)]


def test_wrong_number_of_answers() -> None:
    with pytest.raises(ValueError, match="returned 1 answers for 4 queries"):
        simulate_logs(tiny(0.0), lambda pairs: ["only one"])
