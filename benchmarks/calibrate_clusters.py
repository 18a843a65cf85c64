"""Clustering on the model's own distilled rules, every eval scenario: does the cluster stage recover
the scenario's topics? (issue 21; docs/thresholds.md, "Clustering on distilled rules").

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/calibrate_clusters.py [--cache DIR] [--max-tokens 160]

Per scenario, in a temporary data dir: the base model answers the train queries greedily (as `uno eval`
does), the simulated user gives feedback, the logs are imported, and the retrain's collect and distill
stages run. The distilled logs (query, rules, topic) are cached as JSON under `--cache` (a second run
only re-clusters). Then the cluster stage's maths runs on them and prints, per scenario, the clusters'
topic make-up, purity (share of logs in a cluster whose majority topic is their own) and how many of
the scenario's topics lead a cluster of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "assets" / "eval").glob("*.json")) + [
    ROOT / "tests" / "eval" / "data" / "example-scenario.json"
]
MIN_SIZE = 6


def distilled_logs(path: Path, max_tokens: int) -> list[dict]:
    """The scenario's train logs as the cluster stage sees them: [{uid, topic, query, rules}]."""
    from uno_local.app import App
    from uno_local.eval.scenario import load_scenario
    from uno_local.eval.simuser import simulate_logs
    from uno_local.logs import import_records, parse_record
    from uno_local.retrain import collect, distill
    from uno_local.retrain.context import Context
    from uno_local.retrain.state import RetrainState
    from uno_local.runtime import GenerationRequest, GenerationSettings

    scenario = load_scenario(path)
    with tempfile.TemporaryDirectory(prefix="uno-clusters-") as home:
        app = App.open(home=Path(home))
        app.config.generation.max_tokens = max_tokens
        settings = GenerationSettings.greedy(min(scenario.log_tokens or max_tokens, max_tokens))

        def answer_fn(pairs):
            requests = [GenerationRequest([{"role": "user", "content": q}], settings) for _, q in pairs]
            return [r.text for r in app.runtime.generate_many(requests)]

        records = simulate_logs(scenario, answer_fn)
        topic_of = {r["id"]: r["id"][len(scenario.name) + 1 :].rsplit("-", 1)[0] for r in records}
        import_records(app.store, [parse_record(r) for r in records], title_prefix="Simulated")
        ctx = Context(app)
        state = distill.run(ctx, collect.run(ctx, RetrainState()))
        rows = []
        for log in state.logs:
            item = state.items[log.message_id]
            uid = app.store.db.execute("select uid from messages where id = ?", [log.message_id]).fetchone()[
                0
            ]
            rows.append(
                {"uid": uid, "topic": topic_of.get(uid, "?"), "query": item.query, "rules": item.rules}
            )
        app.close()
    return rows


def cluster_labels(embedder, rows: list[dict], threshold: float | None = None) -> np.ndarray:
    """The cluster stage's labels for `rows` (a fresh clustering of every log)."""
    from uno_local import cluster as clustering
    from uno_local.embedding import embed_logs

    eq, er = embed_logs(embedder, [r["query"] for r in rows], [r["rules"] for r in rows])
    return clustering.cluster_logs(eq, er, [bool(r["rules"]) for r in rows], MIN_SIZE, threshold)


def describe(rows: list[dict], labels: np.ndarray) -> tuple[float, int, int, str]:
    """(purity, topics leading a cluster, topics, make-up)."""
    topics = sorted({r["topic"] for r in rows})
    groups = {
        k: Counter(r["topic"] for r, label in zip(rows, labels, strict=True) if label == k)
        for k in set(labels.tolist())
    }
    majority = sum(c.most_common(1)[0][1] for c in groups.values())
    leaders = {c.most_common(1)[0][0] for c in groups.values()}
    makeup = "; ".join(" + ".join(f"{t} {n}" for t, n in c.most_common()) for _, c in sorted(groups.items()))
    return majority / len(rows), len(leaders & set(topics)), len(topics), makeup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "uno-local-clusters")
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    from backends import open_embedder

    args.cache.mkdir(parents=True, exist_ok=True)
    embedder = open_embedder(None)
    print("| scenario | logs (with rules) | clusters | purity | topics with a cluster | make-up |")
    print("|---|---|---|---|---|---|")
    for path in SCENARIOS:
        cached = args.cache / f"{path.stem}-{args.max_tokens}.json"
        if not cached.exists():
            cached.write_text(json.dumps(distilled_logs(path, args.max_tokens), indent=1))
        rows = json.loads(cached.read_text())
        labels = cluster_labels(embedder, rows)
        purity, led, n_topics, makeup = describe(rows, labels)
        ruled = sum(1 for r in rows if r["rules"])
        print(
            f"| {path.stem} | {len(rows)} ({ruled}) | {len(set(labels.tolist()))} | {purity:.2f} | "
            f"{led} of {n_topics} | {makeup} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
