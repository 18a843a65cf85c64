"""Pair: a log + its rules -> a preference pair (chosen, rejected) for the Expert, or nothing.

chosen = the user's correction when there is one (the most trusted signal); otherwise the best of
a few revisions of the original answer under the rules, kept only if the judge scores it above the
original (the reference never checks this; we do). A satisfied user's answer becomes an SFT example
(chosen = rejected = the answer). rejected is always the original answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from uno_local.distill import FeedbackInput, feedback_text
from uno_local.judge import JudgeCase, score
from uno_local.route import revise_messages


@dataclass
class Pair:
    chosen: str
    rejected: str
    kind: str  # "correction", "revision", "sft"
    chosen_score: float
    rejected_score: float


Revise = Callable[[list[dict], int], list[str]]  # (messages, n) -> n sampled revisions


def make_pair(
    item: FeedbackInput, rules: list[str], revise: Revise | None, n_revisions: int = 3
) -> Pair | None:
    """The pair one log gives, or None when nothing beats the original (pure: `revise` is passed in)."""
    case = JudgeCase(item.query, item.answer, item.correction, tuple(rules))
    original = score(item.answer, case).value
    if item.correction and item.correction.strip() and item.correction.strip() != item.answer.strip():
        return Pair(item.correction, item.answer, "correction", score(item.correction, case).value, original)
    if not rules:
        if item.rating == 1 and item.answer.strip():
            return Pair(item.answer, item.answer, "sft", original, original)
        return None
    if revise is None or n_revisions < 1:
        return None
    feedback = feedback_text(item)
    messages = revise_messages(item.query, item.answer, [*rules, feedback] if feedback else list(rules))
    candidates = [c.strip() for c in revise(messages, n_revisions)]
    scored = [(score(c, case).value, -i, c) for i, c in enumerate(candidates) if c]
    if not scored:
        return None
    best_score, _, best = max(scored)
    if best_score <= original:
        return None
    return Pair(best, item.answer, "revision", best_score, original)
