"""Pair: a log + its rules -> a preference pair (chosen, rejected) for the Expert, or nothing.

chosen = the user's correction when there is one (the most trusted signal); otherwise the best of
a few revisions of the original answer under the rules, kept only if the judge scores it above the
original (the reference never checks this; we do). A satisfied user's answer becomes an SFT example
(chosen = rejected = the answer). rejected is always the original answer.

`fit_to_budget` then makes a pair whose change comes at the end of a long answer (a closing line after
an answer that the token limit cut off) fit the chat's answer budget: both answers keep the same
complete sentences, so the closing habit arrives within the limit a user's answers have.
"""

from __future__ import annotations

import re
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
CountTokens = Callable[[str], int]

# A trained answer should end well inside the chat's token limit (generation.max_tokens), as a complete
# answer does, not at it: a habit learned at the limit is cut off in use.
ANSWER_BUDGET_SHARE = 0.75
# The end of a sentence or line: terminal punctuation (and closing quotes or brackets) before whitespace.
SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)|\n")


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


def divergence(chosen: str, rejected: str) -> int:
    """Where `chosen` starts to differ from `rejected`, moved back to the start of a word both answers
    spell differently (not when `chosen` only adds to `rejected`)."""
    p = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        p += 1
    if p < min(len(chosen), len(rejected)):
        while p > 0 and not chosen[p - 1].isspace() and not chosen[p].isspace():
            p -= 1
    return p


def fit_to_budget(chosen: str, rejected: str, count: CountTokens, budget: int) -> tuple[str, str] | None:
    """Pure: a pair whose answers differ only after `chosen` has gone past `budget` tokens, cut to fit.

    The text both answers share before their difference is cut after its last complete sentence that
    leaves room for chosen's own ending (at most half the budget); chosen keeps that ending, rejected keeps
    its own (nothing, when the user only appended to it). None when the pair already fits, differs early
    (an opening habit, a rewrite: the trainer's window handles those) or has no sentence end to cut at."""
    if count(chosen) <= budget:
        return None
    p = divergence(chosen, rejected)
    shared, c_tail, r_tail = chosen[:p], chosen[p:].strip(), rejected[p:].strip()
    gap = shared[len(shared.rstrip()) :] + chosen[p : len(chosen) - len(chosen[p:].lstrip())]
    room = budget - count(gap + c_tail)
    if count(c_tail) > budget // 2 or count(shared) <= room:
        return None
    ends = [m.end() for m in SENTENCE_END.finditer(shared)]
    body = next((shared[:e].rstrip() for e in reversed(ends) if count(shared[:e].rstrip()) <= room), "")
    if not body:
        return None
    gap = gap or " "
    return body + gap + c_tail, body + (gap + r_tail if r_tail else "")
