"""The learning stages of a retrain: collect -> distill -> predict -> pair -> cluster -> gap.

Each is a thin shell over its pure core (distill.py, pair.py, cluster.py, gap.py); per-log results are
content-addressed artifacts (`Retrain._cached`), so a rerun skips what finished.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import numpy as np

from uno_local import cluster as clustering
from uno_local import gap as gaps
from uno_local.distill import distill_rules, is_implicit_feedback, predict_rules
from uno_local.errors import NothingToLearnError
from uno_local.pair import make_pair
from uno_local.retrain.plan import FALLBACK_WARD, MAX_RULE_CHARS, RULES_TOKENS, ClusterPlan, feedback_input
from uno_local.runtime import GenerationSettings, complete
from uno_local.store.learning import ClusterRow, load_clusters
from uno_local.train import LogData


class LearnStages:
    """Mixed into `Retrain`: turns feedback logs into rules, pairs, clusters and gaps."""

    def _json(self, messages: list[dict], schema: dict) -> str:
        """Grammar-constrained JSON, cut short when a string runs on: llama.cpp's grammar sampling slows
        down with string length, and a rule that long is unusable anyway (the caller then falls back)."""
        parts: list[str] = []
        events = self.app.runtime.stream(
            messages, GenerationSettings.greedy(RULES_TOKENS), json_schema=schema
        )
        try:
            for event in events:
                parts.append(event.delta)
                text = "".join(parts)
                if len(text) - text.rfind('"') > MAX_RULE_CHARS:
                    break
        finally:
            events.close()
        return "".join(parts)

    def stage_collect(self) -> None:
        self.logs = [
            log
            for log in self.store.logs()
            if (log.feedback and not log.feedback.is_empty) or is_implicit_feedback(log.next_user)
        ]
        if not self.logs:
            raise NothingToLearnError(
                "There is no feedback to learn from yet; rate, comment on or correct some answers first."
            )
        self._emit("collect", len(self.logs), len(self.logs), f"{len(self.logs)} logs with feedback")

    def stage_distill(self) -> None:
        for i, log in enumerate(self.logs, 1):
            item = feedback_input(log)
            data = self._cached(
                "distill",
                str(log.message_id),
                (asdict(item),),
                lambda item=item: asdict(distill_rules(item, self._json)),
                {"log": log.message_id, "max_tokens": RULES_TOKENS, "decoding": "greedy, JSON schema"},
            )
            self.items[log.message_id] = LogData(
                log.message_id,
                log.messages[:-1],
                log.query,
                log.answer,
                item.correction,
                data["rules"],
                [],
                None,
            )
            self._emit("distill", i, len(self.logs))

    def stage_predict(self) -> None:
        for i, log in enumerate(self.logs, 1):
            if not self.items[log.message_id].rules:  # no feedback rules: the gap is undefined, skip the call
                self._emit("predict", i, len(self.logs))
                continue
            data = self._cached(
                "predict",
                str(log.message_id),
                (log.query,),
                lambda q=log.query: asdict(predict_rules(q, self._json)),
                {"log": log.message_id, "max_tokens": RULES_TOKENS},
            )
            self.items[log.message_id].predicted = data["rules"]
            self._emit("predict", i, len(self.logs))

    def _revise(self, messages: list[dict], n: int) -> list[str]:
        return [
            complete(self.app.runtime, messages, GenerationSettings(0.8, 0.9, self.answer_tokens, 42 + j))[0]
            for j in range(n)
        ]

    def stage_pair(self) -> None:
        for i, log in enumerate(self.logs, 1):
            item, data = feedback_input(log), self.items[log.message_id]
            pair = self._cached(
                "pair",
                str(log.message_id),
                (asdict(item), data.rules, self.cfg.revisions),
                lambda item=item, rules=data.rules: (
                    asdict(p) if (p := make_pair(item, rules, self._revise, self.cfg.revisions)) else {}
                ),
                {"log": log.message_id, "revisions": self.cfg.revisions, "judge": "deterministic"},
            )
            data.pair = pair or None
            self._emit("pair", i, len(self.logs))

    def stage_cluster(self) -> None:
        ids = [log.message_id for log in self.logs]
        embedder = self.app.embedder
        eq = embedder.encode([self.items[i].query for i in ids])
        er = embedder.encode(["\n".join(self.items[i].rules) for i in ids])
        self._eq = dict(zip(ids, eq, strict=True))
        previous = {row.label: row for row in load_clusters(self.store)}
        members: dict[int, list[int]] = {}
        pending = ids
        if previous and not self.options.recluster:
            members, pending = self._join_existing(previous, ids)
        if len(pending) >= self.cfg.min_cluster_size:
            x = clustering.features(
                np.stack([self._eq[i] for i in pending]), np.stack([er[ids.index(i)] for i in pending])
            )
            threshold = self.cfg.ward_threshold or clustering.calibrate_ward_threshold(x) or FALLBACK_WARD
            labels = clustering.enforce_min_size(
                clustering.ward_clusters(x, threshold), x, self.cfg.min_cluster_size
            )
            offset = 1 + max([*members, *previous], default=-1)
            for mid, label in zip(pending, labels, strict=True):
                if label >= 0:
                    members.setdefault(offset + int(label), []).append(mid)
        self.plans = []
        for label, mids in sorted(members.items()):
            old = previous.get(label)
            rules = [r for r, _ in Counter(r for m in mids for r in self.items[m].rules).most_common(5)]
            centroid = np.mean([self._eq[m] for m in mids], axis=0)
            row = ClusterRow(
                label=label,
                centroid=centroid.astype(float).tolist(),
                members=sorted(mids),
                rules=rules,
                user_rules=old.user_rules if old else None,
                vetoed=old.vetoed if old else False,
                radius=clustering.cluster_radius(
                    np.stack([self._eq[m] for m in mids]), self.cfg.unseen_distance
                ),
            )
            self.plans.append(ClusterPlan(row))
        self._previous = previous
        sizes = ", ".join(str(len(p.row.members)) for p in self.plans)
        self._emit("cluster", 1, 1, f"{len(self.plans)} clusters ({sizes} logs)")

    def _join_existing(
        self, previous: dict[int, ClusterRow], ids: list[int]
    ) -> tuple[dict[int, list[int]], list[int]]:
        """Online: known logs stay in their cluster, new ones join the nearest within reach."""
        current = set(ids)
        members = {label: [m for m in row.members if m in current] for label, row in previous.items()}
        known = {m for mids in members.values() for m in mids}
        router = clustering.Router(
            {k: np.asarray(r.centroid) for k, r in previous.items()},
            self.cfg.unseen_distance,
            {k: r.radius for k, r in previous.items()},
        )
        pending = []
        for mid in ids:
            if mid in known:
                continue
            label, _ = router.route(self._eq[mid])
            (members[label].append(mid) if label is not None else pending.append(mid))
        return {k: v for k, v in members.items() if v}, pending

    def stage_gap(self) -> None:
        embedder = self.app.embedder
        for plan in self.plans:
            per_log = []
            for mid in plan.row.members:
                item = self.items[mid]
                fb = embedder.encode(item.rules) if item.rules else np.zeros((0, embedder.dim), np.float32)
                pred = (
                    embedder.encode(item.predicted)
                    if item.predicted
                    else np.zeros((0, embedder.dim), np.float32)
                )
                per_log.append(gaps.log_gap(fb, pred))
            plan.row.gap = gaps.cluster_gap(per_log)
            plan.row.high_gap = gaps.is_high_gap(plan.row.gap, self.cfg.gap_threshold)
        self._emit("gap", 1, 1, ", ".join(f"c{p.row.label}: {p.row.gap:.2f}" for p in self.plans))
