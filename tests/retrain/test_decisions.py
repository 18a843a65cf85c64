"""The retrain's decisions as pure functions, table-driven: which logs teach, online joining, new
labels, a cluster's rules, reuse and veto, the Critic fallback, the route, and the last run's line."""

from __future__ import annotations

import numpy as np
import pytest

from uno_local.retrain.cluster import first_free_label, join_new_logs, top_rules
from uno_local.retrain.collect import has_feedback
from uno_local.retrain.deploy import choose_route, default_decision
from uno_local.retrain.distill import edited_rules
from uno_local.retrain.runs import describe_run
from uno_local.retrain.train import Plan, plan_cluster
from uno_local.retrain.validate import needs_critic, shipped_win_rate
from uno_local.store import Feedback, Log
from uno_local.store.learning import ClusterRow, RetrainRun
from uno_local.validate import Validation


def row(label: int, centroid=(1.0, 0.0), members=(), **fields) -> ClusterRow:
    return ClusterRow(label=label, centroid=list(centroid), members=list(members), rules=[], **fields)


def feedback(**fields) -> Feedback:
    values = {"rating": None, "comment": None, "correction": None, **fields}
    return Feedback(1, values["rating"], values["comment"], values["correction"], "t", "t")


@pytest.mark.parametrize(
    ("fb", "next_user", "teaches"),
    [
        (None, None, False),
        (feedback(rating=1), None, True),
        (feedback(comment="Shorter please."), None, True),
        (None, "Make it shorter, please.", True),  # an implicit reaction
        (None, "What is the capital of Peru?", False),  # a new question
    ],
)
def test_has_feedback(fb, next_user, teaches):
    log = Log(
        1,
        "u1",
        1,
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "t",
        fb,
        next_user,
    )
    assert has_feedback(log) is teaches


PREVIOUS = {0: row(0, (1.0, 0.0), [1, 2]), 3: row(3, (0.0, 1.0), [5])}
VECS = {1: [1, 0], 2: [1, 0], 5: [0, 1], 7: [0.9, 0.1], 8: [0.1, 0.9], 9: [-1, 0], 10: [0.6, 0.4]}


@pytest.mark.parametrize(
    ("ids", "members", "pending"),
    [
        ([1, 2, 5], {0: [1, 2], 3: [5]}, []),  # known logs stay
        ([1, 2, 5, 7, 8], {0: [1, 2, 7], 3: [5, 8]}, []),  # new logs join the nearest
        ([1, 2, 5, 9], {0: [1, 2], 3: [5]}, [9]),  # beyond the unseen distance: waits
        ([1, 5, 10], {0: [1, 10], 3: [5]}, []),  # nearer to 0 than to 3
        ([1, 7], {0: [1, 7]}, []),  # a cluster whose logs all left is gone
        ([9], {}, [9]),
    ],
)
def test_join_new_logs(ids, members, pending):
    vecs = {k: np.asarray(v, dtype=float) for k, v in VECS.items()}
    assert join_new_logs(PREVIOUS, ids, vecs, unseen_distance=0.5) == (members, pending)


def test_a_new_log_joins_the_cluster_its_rules_match_among_those_that_would_route_it():
    """Log 10's question is nearer cluster 0's, but both clusters would route it and its rules are
    cluster 3's: it joins 3. Log 9's rules are 3's too, but no cluster would route its question."""
    from uno_local.cluster import features

    vecs = {k: np.asarray(v, dtype=float) for k, v in VECS.items()}
    rules = {1: [1, 0], 2: [1, 0], 5: [0, 1], 9: [0, 1], 10: [0, 1]}
    ids = [1, 2, 5, 9, 10]
    x = features(np.stack([vecs[i] for i in ids]), np.stack([np.asarray(rules[i], float) for i in ids]))
    by_id = dict(zip(ids, x, strict=True))
    assert join_new_logs(PREVIOUS, ids, vecs, 0.5, features=by_id) == ({0: [1, 2], 3: [5, 10]}, [9])
    assert join_new_logs(PREVIOUS, ids, vecs, 0.5) == ({0: [1, 2, 10], 3: [5]}, [9])  # by query alone


@pytest.mark.parametrize(
    ("members", "previous", "label"),
    [({}, {}, 0), ({0: [1]}, {}, 1), ({0: [1]}, PREVIOUS, 4), ({7: [1]}, PREVIOUS, 8), ({}, {2: row(2)}, 3)],
)
def test_first_free_label_never_reuses_one(members, previous, label):
    assert first_free_label(members, previous) == label


@pytest.mark.parametrize(
    ("lists", "n", "expected"),
    [
        ([["a", "b"], ["b"], ["c", "b", "a"]], 5, ["b", "a", "c"]),
        ([["a", "b"], ["b", "a"]], 1, ["a"]),  # a tie: the first seen
        ([[], []], 5, []),
    ],
)
def test_top_rules(lists, n, expected):
    assert top_rules(lists, n) == expected


def test_edited_rules_go_to_every_member_of_an_edited_cluster():
    previous = {
        0: row(0, members=[1, 2], user_rules=["Sign off."]),
        1: row(1, members=[3]),
        2: row(2, members=[4]),
    }
    previous[2].user_rules = []  # an edit that removed every rule is still an edit
    assert edited_rules(previous) == {1: ["Sign off."], 2: ["Sign off."], 4: []}


OLD = {
    0: row(0, data_hash="h0", expert="expert-c0"),
    1: row(1, data_hash="h1"),  # that data made no adapter: it would make none again
    2: row(2, data_hash="h2", critic="critic-c2"),
    3: row(3, data_hash="h3", vetoed=True),  # never trained: the user's veto, not the data, decided
}


@pytest.mark.parametrize(
    ("new", "plan", "reused_label"),
    [
        (row(5, data_hash="h0"), Plan.REUSE, 0),  # same data, even under another label (--recluster)
        (row(5, data_hash="h2"), Plan.REUSE, 2),
        (row(5, data_hash="h1"), Plan.REUSE, 1),
        (row(5, data_hash="h3"), Plan.TRAIN, None),  # the veto was lifted: train it now
        (row(5, data_hash="new"), Plan.TRAIN, None),
        (row(5, data_hash="h0", vetoed=True), Plan.VETOED, None),  # a veto wins over reuse
    ],
)
def test_plan_cluster_reuse_and_veto(new, plan, reused_label):
    decision, old = plan_cluster(new, OLD)
    assert decision is plan and (old.label if old else None) == reused_label


@pytest.mark.parametrize(
    ("validation", "critic", "win_rate"),
    [
        (Validation(True, 2, {1: 0.5, 2: 0.8}, 4, "ok"), False, 0.8),
        (Validation(False, 1, {1: 0.5}, 4, "below"), True, 0.5),
        (Validation(False, None, {}, 1, "too few held-out logs"), True, None),
    ],
)
def test_a_failed_expert_falls_back_to_a_critic(validation, critic, win_rate):
    assert needs_critic(validation) is critic and shipped_win_rate(validation) == win_rate


@pytest.mark.parametrize(
    ("expert", "critic", "route"),
    [("expert-c0", None, "expert"), ("expert-c0", "critic-c0", "expert"), (None, "critic-c0", "reflective"),
     (None, None, "base")],
)  # fmt: skip
def test_choose_route(expert, critic, route):
    assert choose_route(expert, critic) == route


def test_default_decision():
    assert default_decision(True).startswith("high gap") and default_decision(False) == "not trained"


STARTED = "2026-12-03T14:05:09.123+00:00"


@pytest.mark.parametrize(
    ("run", "alive", "line"),
    [
        (None, False, "never run"),
        (
            RetrainRun(1, STARTED, None, "running", "train", None),
            True,
            "running since 2026-12-03 14:05 (stage train)",
        ),
        (
            RetrainRun(1, STARTED, None, "running", "train", None),
            False,
            "interrupted during train (started 2026-12-03 14:05); `uno retrain` resumes it",
        ),
        (
            RetrainRun(
                2, STARTED, "x", "finished", "deploy", {"logs": 40, "clusters": [{}, {}], "deployed": ["a"]}
            ),
            False,
            "finished 2026-12-03 14:05: 40 logs, 2 clusters, 1 adapters deployed",
        ),
        (
            RetrainRun(3, STARTED, "x", "failed", "collect", {"error": "There is no feedback."}),
            False,
            "failed during collect (2026-12-03 14:05): There is no feedback.",
        ),
        (
            RetrainRun(4, STARTED, None, "interrupted", "pair", None),
            False,
            "interrupted during pair (2026-12-03 14:05)",
        ),
    ],
)
def test_describe_run(run, alive, line):
    assert describe_run(run, alive) == line
