"""Predict: each query -> the rules the model would follow on its own (its prior, for the gap), cached
per log; logs without feedback rules are skipped (their gap is undefined)."""

from __future__ import annotations

from dataclasses import asdict

from uno_local.distill import predict_rules
from uno_local.retrain.context import RULES_TOKENS, ArtifactJob, Context
from uno_local.retrain.state import RetrainState


def run(ctx: Context, state: RetrainState) -> RetrainState:
    items = [state.items[log.message_id] for log in state.logs if state.items[log.message_id].rules]
    jobs = [
        ArtifactJob(
            str(item.message_id),
            (item.query,),
            lambda q=item.query: asdict(predict_rules(q, ctx.json_rules)),
            {"log": item.message_id, "max_tokens": RULES_TOKENS},
        )
        for item in items
    ]
    for item, data in zip(items, ctx.cached_batch("predict", jobs), strict=True):
        item.predicted = data["rules"]
    if not jobs:
        ctx.emit("predict", 1, 1, "no log has feedback rules")
    return state
