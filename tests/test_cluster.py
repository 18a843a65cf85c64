"""Clustering maths on hand-made vectors, the router, and one run on the real MiniLM embedder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from uno_local.cluster import (
    BASE,
    FALLBACK_WARD,
    Router,
    calibrate_ward_threshold,
    centroids,
    cluster_logs,
    cluster_radius,
    enforce_min_size,
    features,
    follow_ruled_neighbours,
    lend_rules,
    merge_heights,
    relabel,
    spread_distances,
    ward_clusters,
)
from uno_local.config import UnoConfig
from uno_local.errors import ConfigError

# Three tight 2-D blobs, listed out of order so relabelling is visible.
BLOBS = np.array(
    [[10.0, 0.0], [0.0, 0.0], [10.1, 0.1], [0.1, 0.0], [0.0, 10.0], [0.0, 0.1], [9.9, 0.0], [0.1, 10.1]]
)


@pytest.mark.parametrize(
    "eq, er",
    [
        ([[3.0, 4.0]], [[0.0, 2.0]]),
        ([[1.0, 0.0], [0.0, 5.0]], [[1.0, 1.0], [2.0, 0.0]]),
        ([[0.0, 0.0]], [[1.0, 0.0]]),  # an all-zero half stays zero
    ],
)
def test_features_are_unit_rows_with_equal_halves(eq, er):
    x = features(np.array(eq), np.array(er))
    assert x.shape == (len(eq), 4)
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0)
    for row, q in zip(x, eq, strict=True):
        if np.linalg.norm(q) > 0:  # both halves carry weight 1/sqrt(2)
            assert np.isclose(np.linalg.norm(row[:2]), 2**-0.5)
            assert np.isclose(np.linalg.norm(row[2:]), 2**-0.5)


def test_features_reject_mismatched_counts():
    with pytest.raises(ValueError, match="one rule vector per query"):
        features(np.ones((2, 3)), np.ones((3, 3)))


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (1.0, [0, 1, 0, 1, 2, 1, 0, 2]),  # the three blobs, numbered by first member
        (12.0, [0, 1, 0, 1, 2, 1, 0, 2]),  # first blob merge costs sqrt(2*3*2/5)*10 = 15.5
        (16.0, [0, 1, 0, 1, 1, 1, 0, 1]),  # the two blobs nearest each other merge first
        (100.0, [0] * 8),
        (0.01, [0, 1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_ward_clusters_on_blobs(threshold, expected):
    assert ward_clusters(BLOBS, threshold).tolist() == expected


@pytest.mark.parametrize("n, expected", [(0, []), (1, [0])])
def test_ward_clusters_tiny_inputs(n, expected):
    assert ward_clusters(np.ones((n, 3)), 1.0).tolist() == expected


def test_ward_threshold_must_be_positive():
    with pytest.raises(ConfigError, match="ward_threshold"):
        ward_clusters(BLOBS, 0.0)


def test_merge_heights_match_the_ward_formula():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])  # two singletons: sqrt(2*1*1/2) * 2 = 2
    assert np.allclose(merge_heights(x), [2.0])


@pytest.mark.parametrize(
    "labels, expected",
    [
        ([5, 5, 2, 9, 2], [0, 0, 1, 2, 1]),
        ([-1, 3, -1, 1], [-1, 0, -1, 1]),
        ([], []),
    ],
)
def test_relabel_orders_by_first_member(labels, expected):
    assert relabel(np.array(labels, dtype=int)).tolist() == expected


@pytest.mark.parametrize(
    "labels, min_size, expected",
    [
        ([0, 0, 0, 1, 1, 1, 2], 3, [0, 0, 0, 1, 1, 1, 1]),  # the lone point joins the nearer big cluster
        ([0, 0, 0, 1, 1, 1, 2], 1, [0, 0, 0, 1, 1, 1, 2]),
        ([0, 1, 2, 3, 4, 5, 6], 3, [BASE] * 7),  # nothing big enough: everything stays on the base
        ([0, 0, 0, 1, 1, 2, 2], 3, [0, 0, 0, 0, 0, 0, 0]),
    ],
)
def test_enforce_min_size(labels, min_size, expected):
    x = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10], [9, 9]], dtype=float)
    assert enforce_min_size(np.array(labels), x, min_size).tolist() == expected


def test_centroids_are_plain_means_of_query_vectors():
    eq = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    cents = centroids(eq, np.array([0, 0, 1, BASE]))
    assert sorted(cents) == [0, 1]
    assert np.allclose(cents[0], [0.5, 0.5])  # not renormalised
    assert np.allclose(cents[1], [1.0, 1.0])


@pytest.mark.parametrize(
    "query, expected_label",
    [
        ([1.0, 0.1, 0.0], 0),
        ([0.0, 1.0, 0.05], 4),
        ([0.0, 0.0, 1.0], None),  # 90 degrees from both: distance 1.0 > 0.5
        ([-1.0, 0.0, 0.0], None),
    ],
)
@pytest.mark.parametrize("n_centroids", [1, 2])  # one centroid: brute force; two: hnswlib
def test_router_unseen_threshold(query, expected_label, n_centroids):
    cents = {0: np.array([0.9, 0.0, 0.0]), 4: np.array([0.0, 0.5, 0.0])}
    if n_centroids == 1:
        cents.pop(4)
        expected_label = expected_label if expected_label == 0 else None
    label, dist = Router(cents, unseen_distance=0.5).route(np.array(query))
    assert label == expected_label
    expected_dist = 1 - max(
        np.dot(query, c / np.linalg.norm(c)) / np.linalg.norm(query) for c in cents.values()
    )
    assert dist == pytest.approx(expected_dist, abs=1e-5)


def test_router_empty_and_bad_settings():
    assert Router({}, 0.5).route(np.ones(3)) == (None, float("inf"))
    with pytest.raises(ConfigError, match="unseen_distance"):
        Router({0: np.ones(3)}, 0.0)


@pytest.mark.parametrize("n_centroids", [0, 1, 5])
def unit(degrees: float) -> np.ndarray:
    return np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))])


def test_spread_is_leave_one_out():
    # Three members at -10, 0, +10 degrees: each one's distance to the mean direction of the other two.
    spread = spread_distances(np.stack([unit(-10), unit(0), unit(10)]))
    assert spread.tolist() == pytest.approx([1 - np.cos(np.radians(15)), 0.0, 1 - np.cos(np.radians(15))])
    assert spread_distances(unit(0)[None]).size == 0  # one member: no spread


@pytest.mark.parametrize(
    "angles, margin, floor, ceiling, radius",
    [
        ([-10, 0, 10], 0.0, 0.0, 2.0, 1 - np.cos(np.radians(15))),  # the widest leave-one-out distance
        ([-10, 0, 10], 0.1, 0.0, 2.0, 1 - np.cos(np.radians(15)) + 0.1),  # plus the margin
        ([-10, 0, 10], 0.0, 0.5, 0.65, 0.5),  # a tight cluster: the floor
        ([-80, 0, 80], 0.0, 0.5, 0.65, 0.65),  # a sprawling one: the ceiling
        ([-35, 0, 35], 0.0, 0.3, 0.65, 1 - np.cos(np.radians(52.5))),  # in between: its own spread
        ([0], 0.0, 0.5, 0.65, 0.5),  # one member: the floor
    ],
)
def test_cluster_radius(angles, margin, floor, ceiling, radius):
    got = cluster_radius(np.stack([unit(a) for a in angles]), ceiling, margin, floor)
    assert got == pytest.approx(radius)


@pytest.mark.parametrize(
    "query_deg, expected",
    [
        (5, 0),  # inside the tight cluster's radius
        (
            30,
            None,
        ),  # nearest is the tight cluster, but 1 - cos 30 = 0.13 is beyond its 0.05; 0.5 from the other
        (95, 1),  # the broad cluster (90 degrees, radius 0.4) holds it
        (150, None),  # 60 degrees from the broad cluster: 0.5 > 0.4
        (-90, None),  # far from both
    ],
)
def test_router_per_cluster_radius(query_deg, expected):
    router = Router({0: unit(0), 1: unit(90) * 0.3}, unseen_distance=0.9, radii={0: 0.05, 1: 0.4})
    label, dist = router.route(unit(query_deg))
    assert label == expected
    nearest = router.nearest(unit(query_deg))[1]
    assert dist == pytest.approx(nearest if label is None else 1 - np.cos(np.radians(query_deg - 90 * label)))


def test_router_radius_lets_a_farther_cluster_take_what_the_nearest_refuses():
    # 40 degrees from the tight cluster (radius 0.05), 50 from the broad one (radius 0.4): the broad one.
    router = Router({0: unit(0), 1: unit(90)}, unseen_distance=0.9, radii={0: 0.05, 1: 0.4})
    assert router.route(unit(40)) == (1, pytest.approx(1 - np.cos(np.radians(50)), abs=1e-5))
    # A cluster without a radius (stored before radii) uses the global cut.
    assert Router({0: unit(0), 1: unit(90)}, 0.9, radii={1: 0.4, 0: None}).route(unit(40))[0] == 0


@pytest.mark.parametrize(
    "x, expected",
    [
        (BLOBS, (0.21, 15.5)),  # cuts between within-blob merges and the first blob merge
        (np.array([[0.0, 0.0], [1.0, 0.0]]), None),  # two points: no choice
        (np.eye(6), None),  # equidistant points: every merge costs the same, no structure
    ],
)
def test_calibrate_ward_threshold(x, expected):
    cut = calibrate_ward_threshold(x)
    if expected is None:
        assert cut is None
    else:
        assert expected[0] < cut < expected[1]
        assert len(set(ward_clusters(x, cut).tolist())) == 3


def test_a_cut_that_leaves_too_few_trainable_clusters_is_no_topic_boundary():
    # One topic of 12 logs whose last 4 stand apart: the widest gap splits 8 from 4.
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.05, (8, 2)), rng.normal(0, 0.05, (4, 2)) + [1.0, 0.0]])
    cut = calibrate_ward_threshold(x)
    assert cut is not None and sorted(np.bincount(ward_clusters(x, cut)).tolist()) == [4, 8]
    assert calibrate_ward_threshold(x, min_size=6) is None  # only one cluster could train: keep them whole
    assert cluster_logs(x, x, [True] * 12, min_size=6).tolist() == [0] * 12  # not all left on the base
    # Two real topics of 8 still split, whatever the minimum.
    two = np.vstack([x[:8], x[:8] + [1.0, 0.0]])
    assert calibrate_ward_threshold(two, min_size=6) == pytest.approx(calibrate_ward_threshold(two))


# Measured for MiniLM (docs/thresholds.md): the retrain's fallback cut and the default unseen distance.
RECOMMENDED_WARD, RECOMMENDED_UNSEEN = FALLBACK_WARD, UnoConfig().unseen_distance

TOPICS = {
    "gardening": (
        [
            "How often should I water tomato plants?",
            "When is the best time to plant tulip bulbs?",
            "What soil do blueberries like?",
            "How deep should I plant garlic cloves?",
            "Should I prune lavender in autumn?",
            "How do I start a compost heap?",
        ],
        "End every gardening answer with the line 'Happy growing!'",
    ),
    "fitness": (
        [
            "How do I start running as a beginner?",
            "What is a good warm-up before lifting?",
            "How can I improve my push-ups?",
            "How do I do a proper squat?",
            "How do I avoid shin splints?",
            "How do I get better at pull-ups?",
        ],
        "Answer fitness questions as a numbered list of steps.",
    ),
    "history": (
        [
            "Why did the Roman Empire fall?",
            "What caused the First World War?",
            "Who built the pyramids of Giza?",
            "What was the Silk Road?",
            "Who was Genghis Khan?",
            "What was the Magna Carta?",
        ],
        "Keep history answers under 40 words.",
    ),
}


def test_real_embedder_recovers_three_topics_at_the_default_threshold(embedder):
    queries = [q for qs, _ in TOPICS.values() for q in qs]
    rules = [rule for qs, rule in TOPICS.values() for _ in qs]
    topics = [name for name, (qs, _) in TOPICS.items() for _ in qs]
    x = features(embedder.encode(queries), embedder.encode(rules))
    labels = enforce_min_size(ward_clusters(x, RECOMMENDED_WARD), x, UnoConfig().min_cluster_size)
    assert labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6, list(zip(topics, labels.tolist(), strict=True))
    auto = calibrate_ward_threshold(x)  # the default "auto" cut finds the same three topics
    assert auto is not None and ward_clusters(x, auto).tolist() == labels.tolist()
    # Routing on query embeddings alone sends a new gardening question to the gardening cluster.
    router = Router(centroids(embedder.encode(queries), labels), unseen_distance=RECOMMENDED_UNSEEN)
    assert router.route(embedder.encode(["How do I grow strawberries on a balcony?"])[0])[0] == 0
    assert router.route(embedder.encode(["What time zone is Sydney in?"])[0])[0] is None


@pytest.fixture(scope="module")
def embedder():
    from backends.embedder import SentenceEmbedder

    return SentenceEmbedder(threads=1)


@pytest.mark.parametrize(
    ("rows", "has_rules", "cut", "expected"),
    [
        # four agreeing members and one far away: the far one disagrees
        ([[1, 0], [1, 0.1], [1, -0.1], [1, 0.05], [0, 1]], [True] * 5, 0.5, [4]),
        # a member without rules never disagrees, and does not vote
        ([[1, 0], [1, 0.1], [1, -0.1], [1, 0.05], [0, 1]], [True, True, True, True, False], 0.5, []),
        # fewer than four voters: no consensus to disagree with
        ([[1, 0], [1, 0.1], [0, 1]], [True] * 3, 0.5, []),
        # the check off
        ([[1, 0], [1, 0.1], [1, -0.1], [1, 0.05], [0, 1]], [True] * 5, 0.0, []),
        # all agree
        ([[1, 0], [1, 0.1], [1, -0.1], [1, 0.05]], [True] * 4, 0.5, []),
        # a loose cut keeps even the far one
        ([[1, 0], [1, 0.1], [1, -0.1], [1, 0.05], [0.2, 1]], [True] * 5, 0.9, []),
    ],
)
def test_disagreeing_members(rows, has_rules, cut, expected):
    from uno_local.cluster import disagreeing_members

    assert disagreeing_members(np.array(rows, dtype=float), has_rules, cut) == expected


@pytest.mark.parametrize(
    ("labels", "ruled", "expected"),
    [
        ([0, 0, 1, 1, 2, 2], [True, False, True, False, False, False], [0, 0, 1, 1, 0, 1]),
        ([0, 1, 2], [False, False, False], [0, 1, 2]),  # no log with rules: unchanged
        ([0, 1, 1], [True, True, True], [0, 1, 1]),  # all with rules: unchanged
    ],
)
def test_logs_without_rules_follow_their_nearest_ruled_log_by_query(labels, ruled, expected):
    # queries: two topics, along x and along y; the last two rule-less logs sit near each topic
    eq = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.95, 0.05], [0.05, 0.95]])[: len(labels)]
    assert follow_ruled_neighbours(np.array(labels), eq, ruled).tolist() == expected


def test_logs_without_rules_borrow_their_nearest_ruled_logs_rules():
    eq = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9]], dtype=float)
    er = np.array([[1, 1], [-1, 1], [0, 0], [0, 0]], dtype=float)
    lent = lend_rules(eq, er, [True, True, False, False])
    assert lent.tolist() == [[1, 1], [-1, 1], [1, 1], [-1, 1]]
    assert er[2:].tolist() == [[0, 0], [0, 0]]  # the input is not changed
    assert lend_rules(eq, er, [False] * 4).tolist() == er.tolist()  # nothing to lend


# Travel-format's 36 train logs as the real distiller made them (benchmarks/calibrate_clusters.py, the
# base answers at 160 tokens): the booking topic's 12 logs are 10 plain thumbs-up and one noisy comment.
TRAVEL_LOGS = Path(__file__).parent / "data" / "travel-format-distilled.json"


def test_a_topic_of_thumbs_up_stays_apart_from_its_neighbours_on_real_distilled_logs(embedder):
    from uno_local.embedding import embed_logs

    rows = json.loads(TRAVEL_LOGS.read_text())
    eq, er = embed_logs(embedder, [r["query"] for r in rows], [r["rules"] for r in rows])
    labels = cluster_logs(eq, er, [bool(r["rules"]) for r in rows], UnoConfig().min_cluster_size)
    by_topic = {}
    for row, label in zip(rows, labels.tolist(), strict=True):
        by_topic.setdefault(row["topic"], Counter())[label] += 1
    leaders = {topic: counts.most_common(1)[0] for topic, counts in by_topic.items()}
    # each topic's logs are mostly in one cluster, and no two topics lead the same cluster
    assert len({label for label, _ in leaders.values()}) == 3, by_topic
    assert all(n >= 10 for _, n in leaders.values()), by_topic


def test_near_questions_stand_for_unseen_ones_only_when_routed_here_and_no_reworded_member():
    from uno_local.cluster import near_and_new

    members = np.array([[1.0, 0.5, 0.0, 0.0], [1.0, 0.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.5]])  # 0.2 apart
    centroid = members.mean(axis=0)
    questions = np.array(
        [
            [1.0, 0.5, 0.02, 0.0],  # a reworded member: nearer to it than any two members are to each other
            [1.0, -0.4, -0.4, -0.4],  # new (0.41 from each member), and 0.37 from the centroid
            [0.0, 0.0, 0.0, 1.0],  # new, but routing would send it elsewhere (0.84)
        ]
    )
    assert near_and_new(questions, members, centroid, limit=0.5) == [False, True, False]
    assert near_and_new(questions[:1], members[:1], centroid, limit=0.5) == [True]  # one member: no floor
    assert near_and_new(questions, members, centroid, 0.5, unlike_members=False) == [True, True, False]
