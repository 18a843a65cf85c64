"""Pair: each log + its guiding rules -> a preference pair (`uno_local/pair.py` is the pure core),
cached per log; the revisions are sampled through `ctx.revise`."""

from __future__ import annotations

from dataclasses import asdict

from uno_local.pair import make_pair
from uno_local.retrain.collect import feedback_input
from uno_local.retrain.context import ArtifactJob, Context
from uno_local.retrain.state import RetrainState


def run(ctx: Context, state: RetrainState) -> RetrainState:
    n = ctx.cfg.revisions
    data = [state.items[log.message_id] for log in state.logs]
    jobs = [
        ArtifactJob(
            str(log.message_id),
            (asdict(item), d.guide, n),
            lambda item=item, rules=d.guide: (
                asdict(p) if (p := make_pair(item, rules, ctx.revise, n)) else {}
            ),
            {"log": log.message_id, "revisions": n, "judge": "deterministic"},
        )
        for log, d in zip(state.logs, data, strict=True)
        for item in [feedback_input(log)]
    ]
    for d, pair in zip(data, ctx.cached_batch("pair", jobs), strict=True):
        d.pair = pair or None
    return state
