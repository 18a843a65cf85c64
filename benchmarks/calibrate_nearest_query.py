"""Routing with a nearest-training-query fallback, measured: a query beyond the centroid cut goes to the
topic of its nearest training query when that lies within a second cut. Not shipped (docs/eval.md,
session 17): it is compared here, on the same 9 scenarios and with the same leave-one-scenario-out rule,
as `calibrate_thresholds.py --routing` (clusters = the scenarios' topics).

Run: .venv/bin/python benchmarks/calibrate_nearest_query.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.leave_one_scenario_out import (  # noqa: E402
    GLOBAL_CUTS,
    ROUTING_SCENARIOS,
    best_setting,
    pooled,
    routing_data,
    routing_row,
    routing_scores,
)
from uno_local.cluster import Router, l2_normalize  # noqa: E402

FALLBACK_CUTS = [0.0, 0.5, 0.55, 0.58, 0.6, 0.62, 0.64, 0.66, 0.68, 0.7]  # 0: no fallback


class NearestQueryFallback:
    """`Router.route` first; an unseen query then takes the topic of its nearest training query within
    `fallback` (cosine distance)."""

    def __init__(self, data: dict, cut: float, fallback: float) -> None:
        self.router = Router(data["cents"], unseen_distance=cut)
        self.members = [l2_normalize(m) for m in data["members"]]
        self.fallback = fallback

    def route(self, v: np.ndarray) -> tuple[int | None, float]:
        label, dist = self.router.route(v)
        if label is not None or self.fallback <= 0:
            return label, dist
        v = l2_normalize(v)
        dist, label = min((1.0 - float((m @ v).max()), k) for k, m in enumerate(self.members))
        return (label, dist) if dist <= self.fallback else (None, dist)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from backends.embedder import SentenceEmbedder
    from uno_local.paths import embedded_embedder

    embedder = SentenceEmbedder(embedded_embedder())
    datas = [routing_data(embedder, json.loads(p.read_text(encoding="utf-8"))) for p in ROUTING_SCENARIOS]
    print("| centroid cut / fallback | " + " | ".join(d["name"] for d in datas) + " | pooled |")
    for setting in [(0.64, 0.0), (0.64, 0.6), (0.64, 0.62), (0.64, 0.64)]:
        print(f"| {setting} | {routing_row(datas, lambda d, s=setting: NearestQueryFallback(d, *s))} |")
    print("(recall / precision / controls kept)\nLeave-one-scenario-out, chosen on the others:")
    grid = [(c, f) for c in GLOBAL_CUTS for f in FALLBACK_CUTS]
    held_out = []
    for i, held in enumerate(datas):
        setting = best_setting(datas[:i] + datas[i + 1 :], grid, NearestQueryFallback)
        held_out.append(routing_scores(held, NearestQueryFallback(held, *setting)))
        print(f"  {held['name']}: {setting} -> " + ", ".join(f"{k} {v:.3f}" for k, v in held_out[-1].items()))
    print("  held-out mean: " + ", ".join(f"{k} {v:.3f}" for k, v in pooled(held_out).items()))


if __name__ == "__main__":
    main()
