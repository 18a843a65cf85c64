"""The simulated user: (scenario, answers to the train queries, seed) -> feedback log records.

For each answer the user first draws one number to decide whether this is a noisy moment
(probability noise.rate). A noisy moment gives a thumbs-down with one of the noise phrasings and no
correction. Otherwise the user checks the topic's rule: broken -> thumbs-down, one of the rule's
phrasings, and the rewrite of the answer as the correction; kept -> thumbs-up and nothing else.
Records come out in the import format of uno_local/logs.py, so they take the same path as real logs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from uno_local.eval.checks import check, rewrite
from uno_local.eval.scenario import Scenario, Topic

# Fixed so that the same seed gives byte-identical records; one minute per answered query.
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

AnswerFn = Callable[[list[tuple[str, str]]], list[str]]


@dataclass(frozen=True)
class Feedback:
    rating: int
    comment: str | None = None
    correction: str | None = None
    noise: bool = False

    def as_record(self) -> dict:
        """The `feedback` object of the import format."""
        return {"rating": self.rating, "comment": self.comment, "correction": self.correction}


def simulate_feedback(
    scenario: Scenario, topic: Topic, query: str, answer: str, rng: random.Random
) -> Feedback:
    """The user's reaction to one answer; draws exactly one rng.random(), then one choice if it comments."""
    # The noise draw comes first and always happens, so the rng stream never depends on the answer.
    if rng.random() < scenario.noise.rate:
        return Feedback(-1, rng.choice(scenario.noise.feedback), None, noise=True)
    if check(answer, topic.rule.check):
        return Feedback(1)
    return Feedback(-1, rng.choice(topic.rule.feedback), rewrite(answer, topic.rule.check))


def train_order(scenario: Scenario) -> list[tuple[Topic, int]]:
    """(topic, index into its train list), topics interleaved round-robin as a real user's day would be."""
    longest = max(len(t.train) for t in scenario.topics)
    return [(t, i) for i in range(longest) for t in scenario.topics if i < len(t.train)]


def simulate_logs(scenario: Scenario, answer_fn: AnswerFn, seed: int | None = None) -> list[dict]:
    """Answer every train query with one batch call to `answer_fn` and return the user's log records.

    `answer_fn` gets [(topic name, query), ...] and must return one answer per pair, in order.
    `seed` defaults to the scenario's; the same seed and answers give identical records.
    """
    order = train_order(scenario)
    pairs = [(topic.name, topic.train[i]) for topic, i in order]
    answers = list(answer_fn(pairs))
    if len(answers) != len(pairs):
        raise ValueError(f"answer_fn returned {len(answers)} answers for {len(pairs)} queries")
    rng = random.Random(scenario.seed if seed is None else seed)
    records = []
    for position, ((topic, i), answer) in enumerate(zip(order, answers, strict=True)):
        query = topic.train[i]
        feedback = simulate_feedback(scenario, topic, query, answer, rng)
        records.append(
            {
                "id": f"{scenario.name}-{topic.name}-{i}",
                "messages": [{"role": "user", "content": query}, {"role": "assistant", "content": answer}],
                "feedback": feedback.as_record(),
                "created_at": (EPOCH + timedelta(minutes=position)).isoformat(),
            }
        )
    return records


def feedback_summary(records: list[dict]) -> dict[str, int]:
    """Counts of thumbs-up, thumbs-down and corrections in a list of records (for the report)."""
    ratings = [r["feedback"]["rating"] for r in records]
    return {
        "records": len(records),
        "thumbs_up": ratings.count(1),
        "thumbs_down": ratings.count(-1),
        "corrections": sum(1 for r in records if r["feedback"]["correction"] is not None),
    }
