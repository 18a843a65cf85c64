"""Validate: each new Expert's judged epochs answer the held-out logs in llama.cpp -> ship it or not
(`uno_local/validate.py` decides); the epoch that would ship also answers a few of the user's
questions from outside the cluster (`fresh_ids`, in at most `FRESH_TOKENS`), which only the loop
check reads, and new questions like the cluster's own that routing would send to it (`near_of`: the
base model continues a list of the cluster's questions), whose answers must follow the cluster's
checkable rules as the held-out answers must (three held-out logs did not predict the test:
travel-format's lowercase Expert followed in 3 of 3 held-out answers and 1 of 5 test ones). An Expert
that does not ship sends its cluster to the Reflective path (`needs_critic`): a Critic is trained for it here, once the base model shows it can revise these answers at all
(`train.train_critic`). Every new Critic's Reflective path (draft, critique, revision, as
`route.reflect` serves it) then answers the same held-out logs, and is chosen only when it beats the
base as an Expert must (`validate_reflective`); otherwise a high-gap cluster trains its Expert and
judges it (the one adapter left that could help), and any other stays on the base model; `uno rules`
says why."""

from __future__ import annotations

from dataclasses import dataclass

from uno_local.retrain.cluster import near_questions_of
from uno_local.retrain.context import Context
from uno_local.retrain.convert import gguf, judged_checkpoints
from uno_local.retrain.state import ClusterPlan, RetrainState
from uno_local.retrain.train import train_critic, train_expert
from uno_local.route import reflect_many
from uno_local.validate import (
    NEAR_SEED,
    STAYS_ON_BASE,
    Validation,
    near_guides,
    validate_expert,
    validate_reflective,
)

FRESH = 8  # the user's other questions an epoch that would ship also answers, for the loop check
# Their answers' token budget (at most the chat's): the loop check's tolerance was calibrated on answers
# this long (the e2e settings' max_tokens, docs/eval.md); at the chat's 512 they were half the 200-log
# retrain's validate stage (docs/benchmarks.md).
FRESH_TOKENS = 160


def needs_critic(validation: Validation) -> bool:
    """Pure: a failed Expert falls back to a Critic (the Reflective path)."""
    return not validation.ship


def shipped_win_rate(validation: Validation) -> float | None:
    """Pure: the win rate of the epoch that would ship (None when no epoch was judged)."""
    return validation.win_rates.get(validation.epoch) if validation.epoch else None


def heldout_examples(queries: list[str], before: list[str], after: list[str], n: int = 3) -> list[dict]:
    """Pure: up to `n` held-out queries with the base's answer and the Expert's, for the report."""
    return [{"query": q, "before": b, "after": a} for q, b, a in zip(queries, before, after, strict=False)][
        :n
    ]


def fresh_ids(state: RetrainState, plan: ClusterPlan, n: int = FRESH) -> list[int]:
    """Pure: up to `n` of the user's logs outside `plan`'s cluster, evenly spread over them in id order:
    questions its Expert never trained on, for the loop check alone (their answers are not judged)."""
    outside = sorted(set(state.items) - set(plan.row.members))
    return outside[:: max(1, len(outside) // n)][:n] if n > 0 else []


@dataclass(frozen=True)
class Near:
    """New questions like a cluster's own that no log asked (`validate.near_questions`), each with the
    rules its answer is checked against (`validate.near_guides`)."""

    questions: list[str]
    guides: list[list[str]]

    @property
    def prompts(self) -> list[list[dict]]:
        return [[{"role": "user", "content": q}] for q in self.questions]


def near_of(ctx: Context, state: RetrainState, plan: ClusterPlan) -> Near:
    """New questions like the cluster's (`cluster.near_questions_of`), none of those its Expert practised
    on (`train.practice_logs`): the questions its Expert would answer for the user."""
    logs = [state.items[m] for m in plan.learning_members]
    if not near_guides(logs, 1):
        return Near([], [])  # nothing in these logs' rules can be checked on a new answer
    questions = near_questions_of(ctx, state, plan, NEAR_SEED, plan.practice)
    return Near(questions, near_guides(logs, len(questions)))


def judge_expert(ctx: Context, state: RetrainState, plan: ClusterPlan, n: int, total: int) -> Validation:
    """Each judged epoch answers the held-out logs; the epoch that would ship then also answers a few of
    the user's other questions (`fresh_ids`) and new questions like the cluster's (`near_of`), and when
    those loop more than the base's answers, or the near ones do not follow the cluster's rules, the next
    best epoch is checked the same way: only the epochs that could ship pay for these checks."""
    heldout = [state.items[m] for m in plan.heldout_ids]
    fresh = [state.items[m] for m in fresh_ids(state, plan)] if heldout else []
    fresh_tokens = min(ctx.answer_tokens, FRESH_TOKENS)
    base = ctx.base_answers(heldout)
    checkpoints = judged_checkpoints(plan, ctx.cfg.judged_epochs)
    per_epoch, fresh_per_epoch, near_per_epoch, fresh_base = {}, {}, {}, None
    near: Near | None = None
    for epoch, ckpt in checkpoints.items():
        ctx.emit("validate", n, total, f"c{plan.row.label} epoch {epoch}: {len(heldout)} held-out answers")
        per_epoch[epoch] = ctx.answer([log.prompt for log in heldout], gguf(ctx, ckpt)) if heldout else []
    checked: set[int] = set()
    while True:
        validation = validate_expert(
            heldout,
            base,
            per_epoch,
            ctx.cfg.win_rate,
            ctx.cfg.min_heldout,
            ctx.cfg.repetition_margin,
            fresh_base=fresh_base,
            fresh_answers=fresh_per_epoch,
            near=near.guides if near else None,
            near_answers=near_per_epoch,
        )
        if not (validation.ship and heldout) or validation.epoch in checked:
            plan.examples = heldout_examples(
                [log.query for log in heldout],
                base,
                per_epoch.get(validation.epoch or max(per_epoch, default=0), []),
            )
            return validation
        near = near or near_of(ctx, state, plan)
        epoch, adapter = validation.epoch, gguf(ctx, checkpoints[validation.epoch])
        asked = f"{len(fresh)} other questions, {len(near.questions)} new ones like its own"
        ctx.emit("validate", n, total, f"c{plan.row.label} epoch {epoch}: {asked}")
        checked.add(epoch)
        if fresh:  # the base answers them once, only when an epoch needs them
            fresh_base = fresh_base or ctx.base_answers(fresh, fresh_tokens)
            fresh_per_epoch[epoch] = ctx.answer([log.prompt for log in fresh], adapter, fresh_tokens)
        if near.questions:
            near_per_epoch[epoch] = ctx.answer(near.prompts, adapter)


def run(ctx: Context, state: RetrainState) -> RetrainState:
    todo = [p for p in state.plans if p.expert_ckpts]
    for n, plan in enumerate(todo, 1):
        validate_expert_of(ctx, state, plan, n, len(todo))
    critics = [p for p in state.plans if p.critic_ckpt and not p.reused]
    for n, plan in enumerate(critics, 1):
        ctx.emit("validate", n, len(critics), f"c{plan.row.label}: the Reflective path on the held-out logs")
        check_reflective(ctx, state, plan)
        ctx.emit("validate", n, len(critics), f"c{plan.row.label}: {plan.row.decision}")
    # A high gap's Reflective path that was not chosen: an Expert is the only way left (money-matters'
    # "under 60 words", session 28), judged as any other.
    fallback = [p for p in critics if p.row.high_gap and not p.reflective.ship and not p.expert_ckpts]
    for n, plan in enumerate(fallback, 1):
        train_expert(ctx, state, plan, n, len(fallback))
        if plan.expert_ckpts:
            validate_expert_of(ctx, state, plan, n, len(fallback))
    return state


def validate_expert_of(ctx: Context, state: RetrainState, plan: ClusterPlan, n: int, total: int) -> None:
    """Judge the plan's new Expert; one that does not ship sends a low-gap cluster to the Reflective path.
    A high-gap cluster's Expert was its fallback (its Reflective path could not help): when it does not
    ship either, the cluster stays on the base model, and its decision tells both stories."""
    lead = plan.row.decision if plan.row.high_gap else ""
    plan.validation = judge_expert(ctx, state, plan, n, total)
    plan.row.win_rate = shipped_win_rate(plan.validation)
    reason = plan.validation.reason + (
        f"; it practised on {len(plan.practice)} new questions like the cluster's, answered as your "
        f"corrections edit answers ({plan.practice_edit})"
        if plan.practice
        else ""
    )
    plan.row.decision = reason
    if plan.row.high_gap:
        tail = "" if plan.validation.ship else STAYS_ON_BASE
        plan.row.decision = f"{lead}; an Expert was trained instead: {reason}{tail}"
    elif needs_critic(plan.validation):
        train_critic(ctx, state, plan, n, total)
    ctx.emit("validate", n, total, f"c{plan.row.label}: {plan.row.decision}")


def check_reflective(ctx: Context, state: RetrainState, plan: ClusterPlan) -> None:
    """Answer the held-out logs through the Reflective path with the new Critic, and judge it. The
    drafts are the base model's answers already made; each step answers every held-out log in one batch."""
    heldout = [state.items[m] for m in plan.heldout_ids]
    critic_file = gguf(ctx, plan.critic_ckpt)
    base = ctx.base_answers(heldout)

    def generate_many(prompts: list[list[dict]], adapter: str | None) -> list[str]:
        return ctx.answer(prompts, critic_file if adapter else None)

    reflected = reflect_many(
        [log.prompt for log in heldout], generate_many, "critic", ctx.cfg.critic_max_rounds, drafts=base
    )
    answers = [answer for answer, _ in reflected]
    plan.reflective = validate_reflective(heldout, base, answers, ctx.cfg.win_rate, ctx.cfg.min_heldout)
    lead = plan.row.decision or ("high gap" if plan.row.high_gap else "")
    reason = plan.reflective.reason + ("" if plan.reflective.ship or plan.row.high_gap else STAYS_ON_BASE)
    plan.row.decision = f"{lead}; {reason}" if lead else reason
