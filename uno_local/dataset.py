"""Training data from the store: logs with feedback -> TrainExamples.

A correction makes a preference pair (chosen = the correction, rejected = the original answer,
prompt = the context up to the query); a thumbs-up with no correction makes an SFT example
(keep doing this). Other feedback (a comment, a thumbs-down alone) waits for the UNO pipeline,
which turns it into rules and revisions.
"""

from __future__ import annotations

from uno_local.store import Log, Store
from uno_local.training import TrainExample


def example_from_log(log: Log) -> TrainExample | None:
    """The training example one log gives on its own, or None when it needs distilling first."""
    fb = log.feedback
    if fb is None:
        return None
    prompt = [dict(m) for m in log.messages[:-1]]
    if not prompt or prompt[-1]["role"] != "user":
        return None
    if fb.correction and fb.correction.strip() and fb.correction.strip() != log.answer.strip():
        return TrainExample(
            prompt=prompt, chosen=fb.correction, rejected=log.answer, source_ids=[log.message_id]
        )
    if fb.rating == 1 and log.answer.strip():
        return TrainExample(prompt=prompt, chosen=log.answer, rejected=None, source_ids=[log.message_id])
    return None


def examples_from_logs(logs: list[Log]) -> list[TrainExample]:
    """Every log that yields an example, in log order."""
    return [ex for ex in (example_from_log(log) for log in logs) if ex is not None]


def collect_examples(store: Store) -> list[TrainExample]:
    """Read the store and build the examples (the thin I/O shell of this stage)."""
    return examples_from_logs(list(store.logs(with_feedback_only=True)))
