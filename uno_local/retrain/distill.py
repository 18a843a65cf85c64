"""Distill: each log's feedback -> its rules (`uno_local/distill.py` is the pure core), cached per log.

A log that belongs to a cluster whose rules the user edited (`uno rules edit`) also carries those
rules: they, not the distilled ones, guide its revisions, the judge and the Critic (`LogData.guide`).
"""

from __future__ import annotations

from dataclasses import asdict

from uno_local.distill import distill_rules
from uno_local.retrain.collect import feedback_input
from uno_local.retrain.context import RULES_TOKENS, ArtifactJob, Context
from uno_local.retrain.state import RetrainState
from uno_local.store.learning import ClusterRow
from uno_local.train import LogData


def edited_rules(previous: dict[int, ClusterRow]) -> dict[int, list[str]]:
    """Pure: message id -> the user's rules of the edited cluster it belongs to."""
    return {m: row.user_rules for row in previous.values() if row.user_rules is not None for m in row.members}


def run(ctx: Context, state: RetrainState) -> RetrainState:
    edits = {} if ctx.options.recluster else edited_rules(state.previous)  # a recluster starts afresh
    inputs = [feedback_input(log) for log in state.logs]
    jobs = [
        ArtifactJob(
            str(log.message_id),
            (asdict(item),),
            lambda item=item: asdict(distill_rules(item, ctx.json_rules)),
            {"log": log.message_id, "max_tokens": RULES_TOKENS, "decoding": "greedy, JSON schema"},
        )
        for log, item in zip(state.logs, inputs, strict=True)
    ]
    for log, item, data in zip(state.logs, inputs, ctx.cached_batch("distill", jobs), strict=True):
        state.items[log.message_id] = LogData(
            message_id=log.message_id,
            prompt=log.messages[:-1],
            query=log.query,
            answer=log.answer,
            correction=item.correction,
            rules=data["rules"],
            user_rules=edits.get(log.message_id),
        )
    return state
