"""Pair: the correction first, revisions only when they beat the original, SFT for satisfied users."""

from __future__ import annotations

from uno_local.distill import FeedbackInput
from uno_local.pair import make_pair

ANSWER = "Boil water, add the egg and wait eight minutes."
RULES = ['End the answer with "Happy cooking!".']


def reviser(*texts):
    calls = []

    def revise(messages, n):
        calls.append((messages, n))
        return list(texts)[:n]

    revise.calls = calls
    return revise


def test_correction_is_chosen():
    item = FeedbackInput("How do I boil an egg?", ANSWER, -1, "sign off", ANSWER + "\nHappy cooking!")
    pair = make_pair(item, RULES, reviser("never used"))
    assert (pair.chosen, pair.rejected, pair.kind) == (ANSWER + "\nHappy cooking!", ANSWER, "correction")
    assert pair.chosen_score > pair.rejected_score


def test_best_revision_that_beats_the_original():
    revise = reviser("Boil it.", ANSWER + "\nHappy cooking!", ANSWER)
    pair = make_pair(FeedbackInput("q", ANSWER, -1, "Sign off with Happy cooking!"), RULES, revise, 3)
    assert pair.kind == "revision" and pair.chosen.endswith("Happy cooking!")
    prompt = revise.calls[0][0][0]["content"]
    assert "## Initial Answer" in prompt and "1. End the answer" in prompt and "2. Sign off" in prompt


def test_no_revision_beats_the_original():
    pair = make_pair(FeedbackInput("q", ANSWER, -1, "Sign off"), RULES, reviser(ANSWER, "", "Water."), 3)
    assert pair is None


def test_satisfied_answer_is_sft_and_plain_dislike_is_nothing():
    sft = make_pair(FeedbackInput("q", ANSWER, 1), [], None)
    assert (sft.chosen, sft.rejected, sft.kind) == (ANSWER, ANSWER, "sft")
    assert make_pair(FeedbackInput("q", ANSWER, -1), [], reviser("x")) is None
