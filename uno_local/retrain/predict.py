"""Predict: each query -> the rules the model would follow on its own (its prior, for the gap), cached
per log; logs without feedback rules are skipped (their gap is undefined)."""

from __future__ import annotations

from dataclasses import asdict

from uno_local.distill import predict_rules
from uno_local.retrain.context import RULES_TOKENS, Context
from uno_local.retrain.state import RetrainState


def run(ctx: Context, state: RetrainState) -> RetrainState:
    for i, log in enumerate(state.logs, 1):
        item = state.items[log.message_id]
        if item.rules:
            data = ctx.cached_artifact(
                "predict",
                str(log.message_id),
                (log.query,),
                lambda q=log.query: asdict(predict_rules(q, ctx.json_rules)),
                {"log": log.message_id, "max_tokens": RULES_TOKENS},
            )
            item.predicted = data["rules"]
        ctx.emit("predict", i, len(state.logs))
    return state
