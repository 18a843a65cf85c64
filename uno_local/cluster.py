"""Cluster stage: per-log query and rule embeddings -> cluster labels, centroids and a router.

Follows UNO-reference S5: features L2(concat(L2(E(query)), L2(E(rules)))), Ward linkage cut at a
distance threshold, centroids = mean of the members' *query* embeddings (queries at inference have no
rules). uno-local adds a minimum cluster size, deterministic label numbering and a query router with
an "unseen" distance (see `Router`); online joining is the cluster stage's (`retrain/cluster.py`). Label -1 means "stays on the base
model" (not part of any cluster).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from uno_local.errors import ConfigError

BASE = -1  # label of logs that belong to no cluster and stay on the base model
# Routing radius = widest leave-one-out spread + margin, within [floor, ceiling = uno.unseen_distance];
# measured on the eval scenarios (benchmarks/calibrate_thresholds.py --routing, docs/thresholds.md).
RADIUS_MARGIN, RADIUS_FLOOR = 0.05, 0.5
FALLBACK_WARD = 2.5  # docs/thresholds.md: recovers the scenario topics from 36 to 102 logs


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0.0, 1.0, norms)


def features(eq: np.ndarray, er: np.ndarray) -> np.ndarray:
    """Clustering vectors L2(concat(L2(eq), L2(er))): each half weighs 1/sqrt(2), rows have norm 1."""
    eq, er = np.atleast_2d(eq), np.atleast_2d(er)
    if eq.shape[0] != er.shape[0]:
        raise ValueError(f"features needs one rule vector per query, got {eq.shape[0]} and {er.shape[0]}.")
    return l2_normalize(np.concatenate([l2_normalize(eq), l2_normalize(er)], axis=1))


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... in order of their smallest member index; BASE (-1) is kept."""
    labels = np.asarray(labels, dtype=np.int64)
    mapping: dict[int, int] = {}
    for value in labels.tolist():
        if value != BASE and value not in mapping:
            mapping[value] = len(mapping)
    return np.array([mapping.get(v, BASE) for v in labels.tolist()], dtype=np.int64)


def merge_heights(x: np.ndarray) -> np.ndarray:
    """Ward merge heights (ascending, n-1 values) of the rows of `x`."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 2:
        return np.zeros(0)
    return linkage(x, method="ward", metric="euclidean")[:, 2]


def ward_clusters(x: np.ndarray, threshold: float) -> np.ndarray:
    """Ward linkage cut where merge heights exceed `threshold`; labels numbered by `relabel`."""
    if threshold <= 0:
        raise ConfigError(f"uno.ward_threshold must be above 0, got {threshold}.")
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if x.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    tree = linkage(x, method="ward", metric="euclidean")
    return relabel(fcluster(tree, t=threshold, criterion="distance"))


def calibrate_ward_threshold(
    x: np.ndarray,
    min_clusters: int = 2,
    max_clusters: int | None = None,
    min_ratio: float = 1.35,
    min_size: int = 1,
) -> float | None:
    """Midpoint of the widest gap between consecutive Ward merge heights, among cuts that leave
    min_clusters..max_clusters clusters, `min_clusters` of them with at least `min_size` logs; None when
    there is no clear gap (the upper height is under `min_ratio` x the lower one) or fewer than three
    points: keep the configured threshold then.

    Why: inside a topic merges rise slowly, joining two topics costs a jump. On MiniLM features the
    widest gap's ratio was 1.64-1.79 between real topics and at most 1.19 inside one topic
    (docs/thresholds.md). Unlike a fixed threshold this cut follows the data size. A few logs can
    still stand apart inside one small topic (a lone user's 12 city-trivia logs: 1.49), so a cut that
    leaves fewer than `min_clusters` clusters big enough to train (`min_size`) is not a topic boundary.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 3:
        return None
    tree = linkage(x, method="ward", metric="euclidean")
    heights = tree[:, 2]
    n = heights.size + 1
    max_clusters = min(max_clusters or n - 1, n - 1)
    best, cut = -1.0, None
    for i in range(heights.size - 1):  # cutting between heights[i] and heights[i+1] leaves n-1-i clusters
        k = n - 1 - i
        if not (min_clusters <= k <= max_clusters) or heights[i + 1] - heights[i] <= best:
            continue
        sizes = np.bincount(fcluster(tree, t=(heights[i] + heights[i + 1]) / 2, criterion="distance"))
        if int((sizes >= min_size).sum()) >= min_clusters:
            best, cut = heights[i + 1] - heights[i], i
    if cut is None or heights[cut + 1] < min_ratio * heights[cut]:
        return None
    return float((heights[cut] + heights[cut + 1]) / 2)


def _group_means(x: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    return {int(k): x[labels == k].mean(axis=0) for k in sorted(set(labels.tolist())) if k != BASE}


def _nearest_ruled(eq: np.ndarray, has: np.ndarray) -> np.ndarray:
    """For each log without rules, the index (among the ruled logs) of the one nearest by query."""
    eq = l2_normalize(np.asarray(eq, dtype=np.float64))
    return np.argmax(eq[~has] @ eq[has].T, axis=1)


def lend_rules(eq: np.ndarray, er: np.ndarray, ruled: list[bool]) -> np.ndarray:
    """Pure: rule embeddings where each log without rules (a plain thumbs-up, a bare "meh") takes
    those of the ruled log nearest to it by query. Otherwise they all share the empty rule's
    embedding: clustered as one light group across topics, they let Ward join two real topics cheaply
    (travel-format: a booking topic of 10 thumbs-up merged with packing; docs/thresholds.md,
    "Clustering on distilled rules"). Without any log with rules, `er` is returned as it is."""
    er = np.array(er, dtype=np.float64, copy=True)
    has = np.asarray(ruled, dtype=bool)
    if has.any() and not has.all():
        er[~has] = er[has][_nearest_ruled(eq, has)]
    return er


def follow_ruled_neighbours(labels: np.ndarray, eq: np.ndarray, ruled: list[bool]) -> np.ndarray:
    """Pure: each log without rules (a plain thumbs-up, a bare "meh") takes the label of the log with
    rules nearest to it by query (`eq`): a liked answer belongs with its topic, wherever Ward put it
    (before `lend_rules`, the example scenario's liked fitness lists joined two history "meh"s).
    Without any log with rules the labels are unchanged."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    has = np.asarray(ruled, dtype=bool)
    if not has.any() or has.all():
        return labels
    labels[~has] = labels[has][_nearest_ruled(eq, has)]
    return labels


def enforce_min_size(labels: np.ndarray, x: np.ndarray, min_size: int) -> np.ndarray:
    """Merge every cluster smaller than `min_size` into the big cluster whose centroid (in `x`) is
    nearest to its own; when no cluster reaches `min_size`, every log becomes BASE (stays on the
    base model: too little data to train anything). Returns relabelled labels."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    if labels.size == 0 or min_size <= 1:
        return relabel(labels)
    x = np.asarray(x, dtype=np.float64)
    sizes = {k: int((labels == k).sum()) for k in set(labels.tolist()) if k != BASE}
    big = sorted(k for k, s in sizes.items() if s >= min_size)
    if not big:
        return np.full(labels.shape, BASE, dtype=np.int64)
    means = _group_means(x, labels)
    big_means = np.stack([means[k] for k in big])
    for k in sorted(k for k in sizes if sizes[k] < min_size):
        nearest = big[int(np.argmin(np.linalg.norm(big_means - means[k], axis=1)))]
        labels[labels == k] = nearest
    return relabel(labels)


def cluster_logs(
    eq: np.ndarray, er: np.ndarray, ruled: list[bool], min_size: int, threshold: float | None = None
) -> np.ndarray:
    """Pure: the cluster stage's labels for logs with query embeddings `eq` and rule embeddings `er`
    (`ruled[i]`: log i has rules). Ward on `features` (logs without rules lent their nearest ruled
    neighbour's rules, `lend_rules`) cut at `threshold`, or where `calibrate_ward_threshold` finds the
    topics' gap (else `FALLBACK_WARD`); logs without rules then take their nearest ruled neighbour's
    label; clusters under `min_size` join their nearest big one."""
    x = features(eq, lend_rules(eq, er, ruled))
    cut = threshold or calibrate_ward_threshold(x, min_size=min_size) or FALLBACK_WARD
    labels = follow_ruled_neighbours(ward_clusters(x, cut), eq, ruled)
    return enforce_min_size(labels, x, min_size)


def centroids(eq: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Mean query embedding per cluster (not renormalised, as the reference); BASE logs excluded."""
    return _group_means(np.asarray(eq, dtype=np.float64), np.asarray(labels, dtype=np.int64))


def cosine_distance(v: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between vector `v` and each row of `matrix` (0 identical, 2 opposite)."""
    return 1.0 - l2_normalize(matrix) @ l2_normalize(v)


def spread_distances(member_eq: np.ndarray) -> np.ndarray:
    """Leave-one-out spread: each member query's cosine distance to the centroid of the other members,
    an unbiased stand-in for how far an unseen query of the same topic lands (a member is always close to
    a centroid it is part of). Fewer than two members: no spread (empty)."""
    x = l2_normalize(np.atleast_2d(np.asarray(member_eq, dtype=np.float64)))
    n = x.shape[0]
    if n < 2:
        return np.zeros(0)
    others = (x.sum(axis=0, keepdims=True) - x) / (n - 1)
    return 1.0 - np.sum(l2_normalize(others) * x, axis=1)


def near_and_new(
    question_vecs: np.ndarray,
    member_vecs: np.ndarray,
    centroid: np.ndarray,
    limit: float,
    unlike_members: bool = True,
) -> list[bool]:
    """Pure: which new questions stand for the cluster's unseen ones: routing would send them to it
    (within `limit` of its centroid), and, with `unlike_members`, none is nearer to one of the members'
    questions than the two nearest members are to each other (a reworded member, "What's a fun fact
    about Paris?" beside "Tell me a fun fact about Paris.", is answered as it was trained)."""
    members = l2_normalize(np.atleast_2d(np.asarray(member_vecs, dtype=np.float64)))
    between = 1.0 - members @ members.T
    np.fill_diagonal(between, np.inf)
    floor = float(between.min()) if len(members) > 1 and unlike_members else 0.0
    questions = l2_normalize(np.atleast_2d(np.asarray(question_vecs, dtype=np.float64)))
    nearest = (1.0 - questions @ members.T).min(axis=1)
    routed = cosine_distance(np.asarray(centroid, dtype=np.float64), questions) <= limit
    return [bool(r and d >= floor) for r, d in zip(routed, nearest, strict=True)]


def cluster_radius(
    member_eq: np.ndarray, ceiling: float, margin: float = RADIUS_MARGIN, floor: float = RADIUS_FLOOR
) -> float:
    """Pure: the routing radius of one cluster, from its own spread: the widest leave-one-out distance
    of its members plus `margin`, kept within [floor, ceiling] (a cluster of one gets `floor`). The
    ceiling is `uno.unseen_distance`: no cluster reaches farther than the global cut did.
    docs/thresholds.md measures the three on the eval scenarios."""
    spread = spread_distances(member_eq)
    widest = float(spread.max()) if spread.size else floor - margin
    return float(min(ceiling, max(floor, widest + margin)))


def disagreeing_members(
    rule_vecs: np.ndarray, has_rules: list[bool], max_distance: float, voters: int = 4
) -> list[int]:
    """Pure: positions of the members whose rules disagree with their cluster's consensus: the cosine
    distance of a member's rule embedding to the mean of the other rule-bearing members' is above
    `max_distance` (`spread_distances` on the rules). Members without rules (a plain thumbs-up) never
    disagree; with fewer than `voters` rule-bearing members there is no consensus to disagree with, and
    `max_distance` <= 0 turns the check off. docs/thresholds.md measures the cut on the eval scenarios:
    noisy feedback ("Use ALL CAPS from now on.") in a topic's cluster lands far from the topic's habit."""
    voting = [i for i, has in enumerate(has_rules) if has]
    if max_distance <= 0 or len(voting) < voters:
        return []
    spread = spread_distances(np.asarray(rule_vecs)[voting])
    return [i for i, d in zip(voting, spread, strict=True) if d > max_distance]


class Router:
    """Nearest-centroid routing of a query embedding, with an "unseen" cutoff.

    Distance is cosine distance (1 - cos) to each centroid's direction, through an hnswlib index in
    space "cosine". Why cosine and not the reference's raw Euclidean: centroids are means of unit
    vectors, so a diverse cluster has a short centroid and every query would look far from it in L2;
    cosine ignores that length, so one `unseen_distance` means the same for tight and loose clusters.
    With fewer than two centroids (where hnswlib is unreliable) it searches by brute force.

    The cutoff is per cluster when `radii` gives one (`cluster_radius`, learned from the cluster's own
    spread): a query goes to the nearest cluster whose radius holds it, so a tight topic keeps nearby
    strangers out and a broad one keeps its paraphrases in. A cluster without a radius (one stored before
    radii existed) uses the global `unseen_distance`.
    """

    def __init__(
        self,
        cents: Mapping[int, np.ndarray],
        unseen_distance: float,
        radii: Mapping[int, float | None] | None = None,
    ) -> None:
        if unseen_distance <= 0:
            raise ConfigError(f"uno.unseen_distance must be above 0, got {unseen_distance}.")
        self.labels = sorted(int(k) for k in cents)
        self.unseen_distance = float(unseen_distance)
        self.radii = {int(k): float(r) for k, r in (radii or {}).items() if r is not None and int(k) in cents}
        dims = {np.asarray(cents[k]).shape for k in self.labels}
        if len(dims) > 1:
            raise ValueError(f"Router centroids must share one shape, got {sorted(dims)}.")
        self.matrix = (
            np.stack([np.asarray(cents[k], dtype=np.float32) for k in self.labels]) if self.labels else None
        )
        self._index = self._build_index() if len(self.labels) >= 2 else None

    def _build_index(self):
        import hnswlib

        index = hnswlib.Index(space="cosine", dim=self.matrix.shape[1])
        index.init_index(max_elements=len(self.labels), ef_construction=200, M=16, random_seed=42)
        index.add_items(self.matrix, np.arange(len(self.labels)))
        index.set_ef(max(64, len(self.labels)))  # ef >= n: the search visits every centroid at these sizes
        return index

    def nearest(self, query_vec: np.ndarray) -> tuple[int | None, float]:
        """The nearest centroid's label and its cosine distance, whatever the distance."""
        if not self.labels:
            return None, float("inf")
        v = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        if self._index is None:
            dist = cosine_distance(v, self.matrix)
            best = int(np.argmin(dist))
            return self.labels[best], float(dist[best])
        ids, dists = self._index.knn_query(v.reshape(1, -1), k=1)
        return self.labels[int(ids[0][0])], float(dists[0][0])

    def limit(self, label: int) -> float:
        """The distance up to which `label` takes a query: its own radius, else the global cut."""
        return self.radii.get(label, self.unseen_distance)

    def within(self, query_vec: np.ndarray) -> list[tuple[int, float]]:
        """(label, distance) of every cluster whose limit holds the query, nearest first (brute force:
        a handful of centroids, so exact)."""
        if not self.labels:
            return []
        dists = cosine_distance(np.asarray(query_vec, dtype=np.float64).reshape(-1), self.matrix)
        order = np.argsort(dists, kind="stable")
        return [(self.labels[i], float(dists[i])) for i in order if dists[i] <= self.limit(self.labels[i])]

    def route(self, query_vec: np.ndarray) -> tuple[int | None, float]:
        """(label, distance) of the nearest cluster whose limit holds the query; label None when none
        does (the query is unseen; the distance is then the nearest cluster's)."""
        label, dist = self.nearest(query_vec)
        if label is None or not self.radii:
            return (None if label is None or dist > self.unseen_distance else label), dist
        held = self.within(query_vec)
        return held[0] if held else (None, dist)
