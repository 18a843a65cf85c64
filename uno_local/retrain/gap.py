"""Gap: feedback-rule and predicted-rule embeddings -> each cluster's cognitive gap and whether it is
high (`uno_local/gap.py` is the maths); a high-gap cluster trains a Critic instead of an Expert."""

from __future__ import annotations

from uno_local import gap as gaps
from uno_local.embedding import embed_rule_lists
from uno_local.retrain.context import Context
from uno_local.retrain.state import RetrainState


def run(ctx: Context, state: RetrainState) -> RetrainState:
    for plan in state.plans:
        items = [state.items[m] for m in plan.learning_members]
        vecs = embed_rule_lists(ctx.app.embedder, [i.rules for i in items] + [i.predicted for i in items])
        feedback, predicted = vecs[: len(items)], vecs[len(items) :]
        plan.row.gap = gaps.cluster_gap(gaps.log_gap(f, p) for f, p in zip(feedback, predicted, strict=True))
        plan.row.high_gap = gaps.is_high_gap(plan.row.gap, ctx.cfg.gap_threshold)
    ctx.emit("gap", 1, 1, ", ".join(f"c{p.row.label}: {p.row.gap:.2f}" for p in state.plans))
    return state
