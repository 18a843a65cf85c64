"""Cluster: query and rule embeddings -> the cluster table (`uno_local/cluster.py` is the maths).

Online by default: logs already in a cluster stay there, new logs join the cluster nearest by query
and rules among those that would route them (`join_new_logs`), and the rest are clustered afresh once
there are enough of them, under new labels (`first_free_label`). `--recluster` clusters every log
afresh. The user's edits and vetoes stay with their cluster's label. A member whose rules disagree with the rest of its cluster's
(`cluster.disagreeing_members`: noisy feedback) is kept out of its training and validation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from uno_local import cluster as clustering
from uno_local.embedding import embed_logs
from uno_local.errors import NothingToLearnError
from uno_local.retrain.context import Context
from uno_local.retrain.state import ClusterPlan, RetrainState
from uno_local.store.learning import ClusterRow
from uno_local.validate import (
    NEAR_QUESTIONS,
    NEAR_TEMPERATURE,
    NEAR_TOKENS,
    NEAR_TOP_P,
    near_prompts,
    near_questions,
    terse_questions,
)

TOP_RULES = 5


def join_new_logs(
    previous: Mapping[int, ClusterRow],
    ids: list[int],
    query_vecs: Mapping[int, np.ndarray],
    unseen_distance: float,
    use_radius: bool = False,
    features: Mapping[int, np.ndarray] | None = None,
) -> tuple[dict[int, list[int]], list[int]]:
    """Pure: (label -> members, pending). Known logs stay in their cluster (logs no longer collected
    leave it); a new log joins a cluster that would route its query (within `unseen_distance`, or with
    `use_radius` within the cluster's own radius), else it is pending. Where several would, and
    `features` (the clustering vectors of query and rules, `cluster.features`) are given, it joins the
    one whose members' mean vector is nearest to its own, as Ward formed them: a baking question
    corrected with the baking sign-off joins baking, not the dinner-recipes cluster whose questions
    read alike (benchmarks/bench_retrain.py --incremental); else the nearest by query."""
    current = set(ids)
    members = {label: [m for m in row.members if m in current] for label, row in previous.items()}
    known = {m for mids in members.values() for m in mids}
    router = clustering.Router(
        {k: np.asarray(r.centroid) for k, r in previous.items()},
        unseen_distance,
        {k: r.radius for k, r in previous.items()} if use_radius else None,
    )
    means = (
        {k: np.mean([features[m] for m in mids], axis=0) for k, mids in members.items() if mids}
        if features is not None
        else {}
    )
    pending = []
    for mid in ids:
        if mid in known:
            continue
        candidates = [label for label, _ in router.within(query_vecs[mid])]
        if len(candidates) > 1 and all(k in means for k in candidates):
            candidates.sort(key=lambda k: float(np.linalg.norm(features[mid] - means[k])))
        (members[candidates[0]].append(mid) if candidates else pending.append(mid))
    return {k: v for k, v in members.items() if v}, pending


def first_free_label(members: Mapping[int, list[int]], previous: Mapping[int, ClusterRow]) -> int:
    """Pure: new clusters are numbered after every label in use now or before (an old label is never
    reused for another topic, so an edit or a veto never lands on the wrong cluster)."""
    return 1 + max([*members, *previous], default=-1)


def top_rules(rule_lists: list[list[str]], n: int = TOP_RULES) -> list[str]:
    """Pure: the cluster's `n` most common distilled rules (ties: first seen first)."""
    return [r for r, _ in Counter(r for rules in rule_lists for r in rules).most_common(n)]


def run(ctx: Context, state: RetrainState) -> RetrainState:
    cfg, items = ctx.cfg, state.items
    ids = [log.message_id for log in state.logs]
    eq, er = embed_logs(ctx.app.embedder, [items[i].query for i in ids], [items[i].rules for i in ids])
    state.query_vecs = dict(zip(ids, eq, strict=True))
    rule_vecs = dict(zip(ids, er, strict=True))
    previous = {} if ctx.options.recluster else state.previous
    members: dict[int, list[int]] = {}
    pending = ids
    if previous:
        ruled = [bool(items[i].rules) for i in ids]
        x = clustering.features(eq, clustering.lend_rules(eq, er, ruled))
        members, pending = join_new_logs(
            previous,
            ids,
            state.query_vecs,
            cfg.unseen_distance,
            cfg.cluster_radius,
            dict(zip(ids, x, strict=True)),
        )
    if len(pending) >= cfg.min_cluster_size:
        pending_eq = np.stack([state.query_vecs[i] for i in pending])
        labels = clustering.cluster_logs(
            pending_eq,
            np.stack([rule_vecs[i] for i in pending]),
            [bool(items[i].rules) for i in pending],
            cfg.min_cluster_size,
            cfg.ward_threshold,
        )
        offset = first_free_label(members, state.previous)
        for mid, label in zip(pending, labels, strict=True):
            if label >= 0:
                members.setdefault(offset + int(label), []).append(mid)
    state.plans = []
    for label, mids in sorted(members.items()):
        old = previous.get(label)
        mids = sorted(mids)
        kept_out = [
            mids[i]
            for i in clustering.disagreeing_members(
                np.stack([rule_vecs[m] for m in mids]),
                [bool(items[m].rules) for m in mids],
                cfg.rule_consistency,
            )
        ]
        row = ClusterRow(
            label=label,
            centroid=np.mean([state.query_vecs[m] for m in mids], axis=0).astype(float).tolist(),
            members=mids,
            rules=top_rules([items[m].rules for m in mids if m not in kept_out]),
            user_rules=old.user_rules if old else None,
            vetoed=old.vetoed if old else False,
            radius=clustering.cluster_radius(
                np.stack([state.query_vecs[m] for m in mids]), cfg.unseen_distance
            ),
        )
        for m in mids:  # a log that joined an edited cluster is judged and critiqued by its rules too
            items[m].user_rules = row.user_rules
        state.plans.append(ClusterPlan(row, kept_out=kept_out))
    if not state.plans:
        raise NothingToLearnError(
            f"No topic has enough feedback yet: a cluster needs {cfg.min_cluster_size} similar logs "
            "(uno.min_cluster_size); give more feedback, then retrain."
        )
    sizes = ", ".join(str(len(p.row.members)) for p in state.plans)
    kept_out = sum(len(p.kept_out) for p in state.plans)
    note = f"; {kept_out} logs kept out: their rules disagree with their cluster's" if kept_out else ""
    ctx.emit("cluster", 1, 1, f"{len(state.plans)} clusters ({sizes} logs){note}")
    return state


def near_questions_of(
    ctx: Context,
    state: RetrainState,
    plan: ClusterPlan,
    seed: int,
    known: Iterable[str] = (),
    n: int = NEAR_QUESTIONS,
    unlike_members: bool = True,
    shortened: Sequence[str] = (),
    terse: int = 0,
) -> list[str]:
    """New questions like the cluster's: the base model continues lists of its questions
    (`validate.near_prompts`, sampled from `seed`), and those that routing would send to this cluster
    and no log asked (nor `known`) are kept, with `unlike_members` only those no nearer to a member's
    question than its nearest members are to each other (`cluster.near_and_new`). Then up to `terse`
    of the questions in `shortened` as a user types them in a hurry (`validate.terse_questions`), kept
    where routing sends them here however near a member they are: the same question, worded shorter."""
    logs = [state.items[m] for m in plan.learning_members]
    queries = [log.query for log in logs]
    written = ctx.continue_texts(near_prompts(queries, n), NEAR_TOKENS, NEAR_TEMPERATURE, NEAR_TOP_P, seed)
    asked = [*(item.query for item in state.items.values()), *known]
    questions = near_questions(written, asked)
    short = near_questions(terse_questions(shortened, terse), [*asked, *questions], least_words=2)
    if (questions or short) and plan.row.centroid:
        uno = ctx.app.config.uno
        limit = plan.row.radius if uno.cluster_radius and plan.row.radius else uno.unseen_distance
        vecs = ctx.app.embedder.encode(questions + short + queries)
        centroid, members = np.asarray(plan.row.centroid), vecs[len(questions) + len(short) :]
        keep = clustering.near_and_new(vecs[: len(questions)], members, centroid, limit, unlike_members)
        keep += clustering.near_and_new(
            vecs[len(questions) : len(questions) + len(short)], members, centroid, limit, False
        )
        questions = [q for q, kept in zip(questions + short, keep, strict=True) if kept]
    return questions
