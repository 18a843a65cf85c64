"""Pair: each log + its guiding rules -> a preference pair (`uno_local/pair.py` is the pure core),
cached per log; the revisions are sampled through `ctx.revise`."""

from __future__ import annotations

from dataclasses import asdict

from uno_local.pair import make_pair
from uno_local.retrain.collect import feedback_input
from uno_local.retrain.context import Context
from uno_local.retrain.state import RetrainState


def run(ctx: Context, state: RetrainState) -> RetrainState:
    n = ctx.cfg.revisions
    for i, log in enumerate(state.logs, 1):
        item, data = feedback_input(log), state.items[log.message_id]
        pair = ctx.cached_artifact(
            "pair",
            str(log.message_id),
            (asdict(item), data.guide, n),
            lambda item=item, rules=data.guide: (
                asdict(p) if (p := make_pair(item, rules, ctx.revise, n)) else {}
            ),
            {"log": log.message_id, "revisions": n, "judge": "deterministic"},
        )
        data.pair = pair or None
        ctx.emit("pair", i, len(state.logs))
    return state
