"""Train: each cluster's logs -> an Expert LoRA (low gap) or a Critic LoRA (high gap), a checkpoint per
epoch (`uno_local/train.py` builds the examples and caches runs; the trainer is `ctx.trainer`).

A cluster whose data did not change since the last retrain reuses its adapters and its decision (one
that shipped nothing would ship nothing again: training and judging are seeded and greedy), and a
vetoed cluster is not trained (`plan_cluster`). No Critic is trained where the base model's revisions
under the held-out logs' own rules do not win (`can_revise`): its Reflective path could not either, so a
high-gap cluster then trains its Expert after all (`train_expert`), which the validator judges as any.
The training folder is named by a hash of everything the adapter depends on, including the user's
edited rules, so an edit retrains its cluster.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict
from enum import Enum
from itertools import cycle

from uno_local import gap as gaps
from uno_local.errors import NothingToLearnError
from uno_local.pair import Edit, common_edit, edit_of
from uno_local.retrain.cluster import near_questions_of
from uno_local.retrain.context import Context
from uno_local.retrain.pair import finish
from uno_local.retrain.state import ClusterPlan, RetrainState
from uno_local.route import revise_many
from uno_local.store.learning import ClusterRow, input_hash
from uno_local.train import LogData, critic_examples, expert_examples, split, train_cached
from uno_local.training import TrainExample
from uno_local.validate import STAYS_ON_BASE, Validation, validate_revision

REUSED_FIELDS = ("route", "expert", "critic", "win_rate", "decision", "intrinsic_gap")


class Plan(Enum):
    TRAIN = "train"
    REUSE = "reuse"  # the same data made adapters before: keep them
    VETOED = "vetoed"  # the user excluded the cluster


def plan_cluster(row: ClusterRow, previous: Mapping[int, ClusterRow]) -> tuple[Plan, ClusterRow | None]:
    """Pure: what to do with a cluster whose `data_hash` is set, and the earlier row it reuses."""
    if row.vetoed:
        return Plan.VETOED, None
    old = next((r for r in previous.values() if r.data_hash == row.data_hash and not r.vetoed), None)
    if old is not None:  # training and judging are deterministic: the same data, the same decision
        return Plan.REUSE, old
    return Plan.TRAIN, None


def data_hash(ctx: Context, state: RetrainState, row: ClusterRow) -> str:
    """Everything a cluster's adapters depend on: its logs' rules, edits and pairs, and the settings."""
    data = [(m, state.items[m].rules, state.items[m].pair) for m in row.members]
    return input_hash(
        data,
        row.high_gap,
        row.effective_rules,
        asdict(ctx.app.config.train),
        ctx.backend,
        ctx.model_name,
        asdict(ctx.cfg),
    )


def run(ctx: Context, state: RetrainState) -> RetrainState:
    todo = []
    for plan in state.plans:
        row = plan.row
        row.data_hash = data_hash(ctx, state, row)
        plan.train_ids, plan.heldout_ids = split(
            plan.row.members,
            ctx.cfg.heldout_share,
            ctx.cfg.min_heldout,
            {m for m in plan.row.members if state.items[m].judgeable},
            set(plan.kept_out),
        )
        decision, old = plan_cluster(row, state.previous)
        if decision is Plan.VETOED:
            row.route, row.decision = "base", "vetoed by you: not trained"
        elif decision is Plan.REUSE:
            plan.reused = True
            for name in REUSED_FIELDS:
                setattr(row, name, getattr(old, name))
        else:
            todo.append(plan)
    if not todo and not ctx.options.recluster:
        raise NothingToLearnError(
            "Nothing new to learn: every topic was already trained and judged on all of your feedback."
        )
    for n, plan in enumerate(todo, 1):
        if len(plan.heldout_ids) < ctx.cfg.min_heldout:  # nothing could ever ship: do not train
            plan.row.route = "base"
            plan.row.decision = (
                f"not trained: only {len(plan.heldout_ids)} of its logs can be held out to validate an "
                f"adapter (a correction or a comment with rules; {ctx.cfg.min_heldout} needed), so none could ship"
            )
            continue
        if plan.row.high_gap:
            skipped = sum(
                ctx.count_tokens(state.items[m].pair["chosen"]) * 2  # before any `release`
                for m in plan.train_ids
                if state.items[m].pair
            )
            train_critic(ctx, state, plan, n, len(todo))
            if plan.critic_ckpts:
                state.gap_skipped_tokens += skipped
                continue
            # No Reflective path can help where the base model cannot revise: an Expert is the only way
            # left, and the validator judges it as any other (tech-support's Wi-Fi sign-off, session 28).
        train_expert(ctx, state, plan, n, len(todo))
    return state


def train_expert(ctx: Context, state: RetrainState, plan: ClusterPlan, n: int, total: int) -> None:
    """The Expert for a cluster: preference pairs (and liked answers) of its training logs, and of new
    questions like them answered as the user's corrections edit answers (`practice_logs`)."""
    logs = [state.items[m] for m in plan.train_ids]
    own = expert_examples(logs)
    if len(own) < 2:
        plan.row.decision = "too few preference pairs to train an Expert"
        return
    # With as many optimizer steps, ten practice answers beside eight logs taught the lowercase habit
    # less (held-out 0.50, against 0.83 without them; docs/eval.md, session 33): they add steps instead.
    practice, edit = practice_logs(ctx, state, plan, own, n, total)
    examples = expert_examples(logs + practice)
    trained = {json.dumps(e.prompt) for e in examples}
    plan.practice = [log.query for log in practice if json.dumps(log.prompt) in trained]
    plan.practice_edit = edit.describe() if plan.practice and edit else ""
    plan.expert_ckpts, metrics = _train(ctx, "expert", plan, examples, "preference", n, total, len(own))
    if "reference_logp_chosen" in metrics:  # the trainer's own reference forwards, for free
        plan.row.intrinsic_gap = gaps.intrinsic_gap(
            metrics["reference_logp_chosen"], metrics["reference_logp_rejected"]
        )


PRACTICE_SEED = 101  # not the validator's near questions (`validate.NEAR_SEED`): other samples


def practice_logs(
    ctx: Context, state: RetrainState, plan: ClusterPlan, own: list[TrainExample], n: int, total: int
) -> tuple[list[LogData], Edit | None]:
    """Logs the user never wrote, for the Expert to practise the habit on questions worded otherwise
    than the cluster's: where most of its training logs' corrections make one edit (`pair.common_edit`:
    a sign-off or an opening added, lowercase, a list), the base model answers new questions like the
    cluster's (`cluster.near_questions_of`) and each answer, so edited, is a correction of it. Trained
    on its own logs' wording only, travel-format's lowercase Expert followed the habit in 3 of 3
    held-out answers and 2 of 4 new questions (docs/eval.md, session 32). Each stands for a log whose
    edit it copies and that trains (its rules, its id: forgetting that log retrains without it); where
    none of those trains (corrections of form only beside liked answers of that form,
    `train.expert_examples`), neither would the practice, and no question is written."""
    train = [state.items[m] for m in plan.train_ids]
    corrected = [log for log in train if log.correction and log.correction.strip()]
    edit = common_edit([(log.answer, log.correction) for log in corrected])
    if edit is None or ctx.cfg.practice_questions < 1:
        return [], None
    trains = {i for example in own for i in example.source_ids}  # `own`: the logs' Expert examples
    sources = [
        log for log in corrected if edit_of(log.answer, log.correction) == edit and log.message_id in trains
    ]
    if not sources:
        return [], None
    label = f"expert c{plan.row.label} ({n}/{total})"
    ctx.emit("train", 0, 1, f"{label}: new questions to practise on, {edit.describe()}")
    # A reworded question of the cluster's is practice too: the habit must not hang on the wording; nor
    # on the length: a third as many again are its training questions typed tersely ("Cat sleep much?").
    n_questions = ctx.cfg.practice_questions
    questions = near_questions_of(
        ctx,
        state,
        plan,
        PRACTICE_SEED,
        n=n_questions,
        unlike_members=False,
        shortened=[log.query for log in train],
        terse=n_questions // 3,
    )
    answers = ctx.answer([[{"role": "user", "content": q}] for q in questions], None) if questions else []
    logs = []
    for question, answer, source in zip(questions, answers, cycle(sources)):
        correction = edit.apply(answer)
        pair = {"chosen": correction, "rejected": answer, "kind": "correction"}
        if correction.strip() != answer.strip() and (pair := finish(ctx, pair)):
            prompt = [{"role": "user", "content": question}]
            logs.append(
                dataclasses.replace(
                    source, prompt=prompt, query=question, answer=answer, correction=correction, pair=pair
                )
            )
    return logs, edit


def train_critic(ctx: Context, state: RetrainState, plan: ClusterPlan, n: int, total: int) -> None:
    """The Critic for the Reflective path, on every member (a high gap, or a failed Expert), once
    `can_revise` shows that the base model's revisions could win at all."""
    examples = critic_examples([state.items[m] for m in plan.learning_members])
    if len(examples) < 2:
        plan.row.route, plan.row.decision = "base", plan.row.decision or "too few rules to train a Critic"
        return
    ctx.emit("train", 0, 1, f"critic c{plan.row.label} ({n}/{total}): can the base model revise its answers?")
    probe = can_revise(ctx, state, plan)
    if not probe.ship:
        lead = plan.row.decision or ("high gap" if plan.row.high_gap else "")
        plan.row.route = "base"
        plan.row.decision = (f"{lead}; {probe.reason}" if lead else probe.reason) + (
            "" if plan.row.high_gap else STAYS_ON_BASE  # a high gap tries its Expert next
        )
        return
    plan.critic_ckpts, _ = _train(ctx, "critic", plan, examples, "sft", n, total)


def can_revise(ctx: Context, state: RetrainState, plan: ClusterPlan) -> Validation:
    """The base model revises its own answers to the held-out logs under each log's own rules (the
    suggestions a Critic trained on them aims to give), in one batch, judged as the Reflective path will
    be (`validate.validate_revision`). Training a Critic costs about a minute; this, one batch."""
    heldout = [state.items[m] for m in plan.heldout_ids]
    base = ctx.base_answers(heldout)
    revised = revise_many(
        [log.prompt for log in heldout],
        base,
        [list(log.guide) for log in heldout],
        lambda prompts, _adapter: ctx.answer(prompts, None),
    )
    answers = [draft if problem else text for (text, problem), draft in zip(revised, base, strict=True)]
    problems = [problem for _, problem in revised]
    return validate_revision(heldout, base, answers, ctx.cfg.win_rate, ctx.cfg.min_heldout, problems)


def _train(
    ctx: Context,
    kind: str,
    plan: ClusterPlan,
    examples: list[TrainExample],
    objective: str,
    n: int,
    total: int,
    epochs_for: int | None = None,
):
    # Named by the examples too: practice answers come from the base model, not from the data alone.
    folder = ctx.app.home / "work" / f"{kind}-{input_hash(plan.row.data_hash, [asdict(e) for e in examples])}"

    def report(p) -> None:
        ctx.emit(
            "train",
            p.step,
            p.total_steps,
            f"{kind} c{plan.row.label} ({n}/{total}) loss {p.loss:.3f} margin {p.reward_margin:.2f} "
            f"{p.tokens_per_s:.0f} tok/s ETA {p.eta_s:.0f}s",
        )

    # The model in llama.cpp (about 200 MB with its contexts) is not needed while the trainer's base
    # trains; the next generation loads it again (docs/benchmarks.md, "uno retrain ... peak memory").
    ctx.app.runtime.release()
    ckpts, metrics = train_cached(
        ctx.trainer, examples, ctx.app.config.train, folder, objective, report, ctx.should_stop, epochs_for
    )
    if metrics.get("reused"):
        ctx.cached["train"] += 1
    plan.train_tokens += int(metrics.get("tokens_per_s", 0) * metrics.get("seconds", 0))
    return ckpts, metrics
