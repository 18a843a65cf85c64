"""Collect: the store's logs -> the logs with feedback (explicit, or an implicit next-turn reaction),
and the cluster table as the last retrain left it (with the user's edits and vetoes)."""

from __future__ import annotations

from uno_local.distill import FeedbackInput, is_implicit_feedback
from uno_local.errors import NothingToLearnError
from uno_local.retrain.context import Context
from uno_local.retrain.state import RetrainState
from uno_local.store import Log
from uno_local.store.learning import load_clusters


def has_feedback(log: Log) -> bool:
    """A log teaches something when it has feedback, or the user's next message reads like feedback."""
    return bool(log.feedback and not log.feedback.is_empty) or is_implicit_feedback(log.next_user)


def feedback_input(log: Log) -> FeedbackInput:
    """What distill and pair see of one log."""
    fb = log.feedback
    return FeedbackInput(
        query=log.query,
        answer=log.answer,
        rating=fb.rating if fb else None,
        comment=fb.comment if fb else None,
        correction=fb.correction if fb else None,
        next_user=log.next_user,
    )


def run(ctx: Context, state: RetrainState) -> RetrainState:
    state.logs = [log for log in ctx.store.logs() if has_feedback(log)]
    if not state.logs:
        raise NothingToLearnError(
            "There is no feedback to learn from yet; rate, comment on or correct some answers first."
        )
    state.previous = {row.label: row for row in load_clusters(ctx.store)}
    ctx.emit("collect", len(state.logs), len(state.logs), f"{len(state.logs)} logs with feedback")
    return state
