"""Pair: each log + its guiding rules -> a preference pair (`uno_local/pair.py` is the pure core),
cached per log; the revisions are sampled through `ctx.revise`. Both answers then lose the lines that
repeat an earlier one (`drop_repeated_lines`: a loop is never learned), and a pair whose chosen answer
cannot be generated within the chat's token limit is cut to the answer budget, or whose ending was
appended after an unfinished sentence loses that sentence (`fit_to_budget`), so a closing habit is
learned where answers end in use."""

from __future__ import annotations

from dataclasses import asdict

from uno_local.pair import drop_repeated_lines, fit_to_budget, make_pair
from uno_local.retrain.collect import feedback_input
from uno_local.retrain.context import ArtifactJob, Context
from uno_local.retrain.state import RetrainState


def run(ctx: Context, state: RetrainState) -> RetrainState:
    n = ctx.cfg.revisions
    data = [state.items[log.message_id] for log in state.logs]
    jobs = [
        ArtifactJob(
            str(log.message_id),
            (asdict(item), d.guide, n, *ctx.decoding),
            lambda item=item, rules=d.guide: (
                asdict(p) if (p := make_pair(item, rules, ctx.revise, n)) else {}
            ),
            {"log": log.message_id, "revisions": n, "judge": "deterministic"},
        )
        for log, d in zip(state.logs, data, strict=True)
        for item in [feedback_input(log)]
    ]

    for d, pair in zip(data, ctx.cached_batch("pair", jobs), strict=True):
        d.pair = finish(ctx, pair)
    return state


def finish(ctx: Context, pair: dict) -> dict | None:
    """A pair without the lines that repeat an earlier one, and cut to the chat's answer budget when its
    chosen answer cannot be generated within the token limit (`fit_to_budget`); None for no pair."""
    if not pair:
        return None
    pair = {**pair, **{k: drop_repeated_lines(pair[k]) for k in ("chosen", "rejected")}}
    if pair["kind"] != "sft" and (
        fitted := fit_to_budget(pair["chosen"], pair["rejected"], ctx.count_tokens, ctx.answer_tokens)
    ):
        pair = {**pair, "chosen": fitted[0], "rejected": fitted[1], "fitted": ctx.answer_tokens}
    return pair
