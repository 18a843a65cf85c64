"""Calibrate the UNO thresholds on the embedded MiniLM: scenario -> printed Ward heights, cluster
recovery per (threshold, min size), query-to-centroid distances and rule-novelty gaps.

Run: .venv/bin/python benchmarks/calibrate_thresholds.py [--scenario PATH] [--reps N] [--model-prior]
The numbers it prints are recorded in docs/thresholds.md. `--model-prior` asks the embedded SmolLM2
(llama.cpp, JSON schema) for the rules it would predict from each query, the real "prior" of the gap.
`--repetition N` measures the validator's repetition margin on N base answers. `--routing` calibrates the router's per-cluster radius (`cluster.cluster_radius`) against one
global cut, leave-one-scenario-out over every scenario in assets/eval/ and the example scenario: the
parameters are chosen on the other scenarios and reported on the one left out. `--consistency` does
the same for the rule-consistency cut that keeps noisy logs out of a topic's training (their scores
and choice rules are in leave_one_scenario_out.py; this file prints the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.leave_one_scenario_out import (  # noqa: E402
    CEILINGS,
    FLOORS,
    GLOBAL_CUTS,
    MARGINS,
    ROUTING_SCENARIOS,
    best_cut,
    best_setting,
    consistency_data,
    consistency_score,
    consistency_scores,
    pooled,
    radius_router,
    routing_data,
    routing_row,
    routing_scores,
)
from uno_local.cluster import (  # noqa: E402
    RADIUS_FLOOR,
    RADIUS_MARGIN,
    Router,
    calibrate_ward_threshold,
    centroids,
    cluster_radius,
    enforce_min_size,
    features,
    merge_heights,
    ward_clusters,
)
from uno_local.config import UnoConfig  # noqa: E402
from uno_local.gap import cluster_gap, log_gap  # noqa: E402

# The scenario ships with the repo once assets/ has it; the shared copy is the original.
SCENARIOS = [
    ROOT / "assets" / "eval" / "example-scenario.json",
    Path("/work/shared/eval/example-scenario.json"),
]
# Extra ways a distiller could phrase each topic's habit (the comments themselves are used too).
PARAPHRASES = {
    "gardening": [
        "Sign off gardening answers with 'Happy growing!'",
        "Finish the answer with Happy growing!",
    ],
    "fitness": ["Use a numbered list of steps.", "Present the advice as numbered steps."],
    "history": ["Answer briefly, in under 40 words.", "Be concise and give only the gist."],
}
EXTRA_CONTROLS = [
    "How do I bake sourdough bread?",
    "What is the best way to learn Python?",
    "How do I change a flat tyre?",
    "What are good names for a cat?",
    "How do I write a cover letter?",
    "What is the speed of light?",
    "How do I make a budget spreadsheet?",
    "Recommend a good science fiction novel.",
    "How do I fix a leaking tap?",
    "What is the difference between a virus and a bacterium?",
    "How do I cook rice in a pot?",
    "Explain how a mortgage works.",
    "What time zone is Sydney in?",
    "How do I clean a cast iron pan?",
    "What is machine learning?",
    "How do I plan a trip to Italy?",
]
# What a competent model would predict from a query of each topic (plus the query itself).
HAND_PRIOR = {
    "gardening": [
        "Give practical gardening advice suited to the plant",
        "Mention the right timing and season",
        "Explain the soil, water and sunlight needs",
        "Keep the instructions clear and simple",
    ],
    "fitness": [
        "Give safe, beginner-friendly advice",
        "Explain the proper form and technique",
        "Mention warming up and recovery",
        "Encourage gradual progress",
    ],
    "history": [
        "Give accurate historical facts",
        "Mention the key dates and people",
        "Explain the causes and consequences",
        "Stay neutral and factual",
    ],
}
# Feedback a user might give that the model's prior already covers (the low-gap kind).
PREDICTABLE = {
    "gardening": ["Tell me the best time of year to do it.", "Explain what the plant needs to thrive."],
    "fitness": ["Explain the correct technique.", "Make it safe for a beginner."],
    "history": ["Mention the key dates.", "Explain the main causes."],
}


class CachedEmbedder:
    """Embeds each distinct text once: the sections below re-embed the same sentences many times."""

    def __init__(self, embedder) -> None:
        self.embedder, self.cache = embedder, {}

    def encode(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        self.cache.update(zip(todo, self.embedder.encode(todo), strict=True))
        return np.stack([self.cache[t] for t in texts]) if texts else self.embedder.encode([])


def build_logs(scenario: dict, reps: int, with_test: bool) -> tuple[list[str], list[str], np.ndarray]:
    """One log per (query, rep): its topic's habit in rotating phrasings, every 7th a noise comment."""
    queries, rules, topics, c = [], [], [], 0
    for ti, topic in enumerate(scenario["topics"]):
        pool = [topic["rule"]["text"], *topic["rule"]["feedback"], *PARAPHRASES.get(topic["name"], [])]
        for _ in range(reps):
            for q in topic["train"] + (topic["test"] if with_test else []):
                noise = c % 7 == 3  # about the scenario's 15% noise rate
                rules.append(scenario["noise"]["feedback"][c % 4] if noise else pool[c % len(pool)])
                queries.append(q)
                topics.append(ti)
                c += 1
    return queries, rules, np.array(topics)


def purity(labels: np.ndarray, topics: np.ndarray) -> float:
    """Share of logs whose cluster's majority topic is their own topic (BASE logs count as wrong)."""
    good = sum(np.bincount(topics[labels == k]).max() for k in set(labels.tolist()) if k != -1)
    return good / len(labels)


def section_clusters(embedder, scenario: dict, ward: float, min_size: int) -> None:
    print("\n## Ward merge heights and cluster recovery (3 topics, ~15% noise)")
    grid = [1.2, 1.6, 2.0, 2.2, 2.4, 2.5, 2.6, 2.8, 3.0, 3.5]
    for reps, with_test in ((1, False), (1, True), (2, True), (3, True)):
        q, r, t = build_logs(scenario, reps, with_test)
        x = features(embedder.encode(q), embedder.encode(r))
        h = merge_heights(x)
        auto = calibrate_ward_threshold(x)
        print(
            f"n={len(q)}: top merge heights {np.round(h[-6:], 2).tolist()}; widest-gap cut "
            + (
                "none"
                if auto is None
                else f"{auto:.2f} -> {len(set(ward_clusters(x, auto).tolist()))} clusters"
            )
        )
        cells = []
        for th in grid:
            raw = ward_clusters(x, th)
            kept = enforce_min_size(raw, x, min_size)
            cells.append(f"{th}: {len(set(raw.tolist()))}->{len(set(kept.tolist()))} ({purity(kept, t):.2f})")
        print("   threshold: raw->after min size (purity): " + "; ".join(cells))
    for topic in scenario["topics"]:  # one topic alone: the widest gap should not look like a topic boundary
        q, r, _ = build_logs({**scenario, "topics": [topic]}, 3, True)
        h = merge_heights(features(embedder.encode(q), embedder.encode(r)))
        i = int(np.argmax(np.diff(h)))
        print(
            f"   {topic['name']} alone (n={len(q)}): widest-gap ratio {h[i + 1] / h[i]:.2f}, "
            f"top height {h[-1]:.2f}, auto cut {calibrate_ward_threshold(features(embedder.encode(q), embedder.encode(r)))}"
        )
    q, r, t = build_logs(scenario, 1, False)
    x = features(embedder.encode(q), embedder.encode(r))
    labels = enforce_min_size(ward_clusters(x, ward), x, min_size)
    print(f"Clusters at ward {ward}, min size {min_size} (n={len(q)}):")
    for k in sorted(set(labels.tolist())):
        idx = np.where(labels == k)[0]
        names = Counter(scenario["topics"][int(t[i])]["name"] for i in idx)
        print(f"   {k}: {len(idx)} logs {dict(names)}")


def section_router(embedder, scenario: dict, ward: float, min_size: int, unseen: float) -> None:
    print("\n## Query-to-centroid cosine distance (router)")
    q, r, _ = build_logs(scenario, 1, False)
    eq = embedder.encode(q)
    x = features(eq, embedder.encode(r))
    labels = enforce_min_size(ward_clusters(x, ward), x, min_size)
    router = Router(centroids(eq, labels), unseen_distance=unseen)

    def dists(texts: list[str]) -> list[float]:
        return sorted(round(router.nearest(v)[1], 3) for v in embedder.encode(texts))

    groups = {
        "train queries (members)": q,
        "held-out topic queries": [x for topic in scenario["topics"] for x in topic["test"]],
        "scenario controls": scenario["controls"],
        "extra controls": EXTRA_CONTROLS,
    }
    for name, texts in groups.items():
        d = dists(texts)
        routed = sum(v <= unseen for v in d)
        print(
            f"   {name}: min {d[0]:.3f} median {np.median(d):.3f} max {d[-1]:.3f}; "
            f"routed to a cluster at {unseen}: {routed}/{len(d)}"
        )


def section_routing(embedder) -> None:
    print("\n## Routing: per-cluster radius vs one global cut, leave-one-scenario-out")
    scenarios = [json.loads(p.read_text(encoding="utf-8")) for p in ROUTING_SCENARIOS]
    datas = [routing_data(embedder, sc) for sc in scenarios]
    n_on, n_off = sum(len(d["on"]) for d in datas), sum(len(d["off"]) for d in datas)
    print(f"   {len(scenarios)} scenarios: {n_on} on-topic test queries, {n_off} controls")
    for d in datas:  # the raw spread, per topic: leave-one-out radius before margin and clipping
        spreads = [cluster_radius(m, 2.0, 0.0, 0.0) for m in d["members"]]
        nearest_control = min(float(Router(d["cents"], 2.0).nearest(v)[1]) for v in d["off"])
        print(
            f"   {d['name']}: widest leave-one-out spread per topic {np.round(spreads, 3).tolist()}; nearest control {nearest_control:.3f}"
        )
    radius_grid = [(m, f, c) for m in MARGINS for f in FLOORS for c in CEILINGS if f < c]
    global_grid = [(c,) for c in GLOBAL_CUTS]

    def global_router(d, cut):
        return Router(d["cents"], unseen_distance=cut)

    print("   Per scenario (recall / precision / controls kept), the old global cut against shipped radii:")
    fixed = [("global 0.64 (old default)", global_router, (0.64,))]
    shipped = (RADIUS_MARGIN, RADIUS_FLOOR, UnoConfig().unseen_distance)  # ceiling: uno.unseen_distance
    fixed.append((f"radius {shipped} (shipped)", radius_router, shipped))
    fixed += [(f"global {c}", global_router, (c,)) for c in (0.6, 0.65)]
    fixed += [
        (f"radius {c}", radius_router, c) for c in ((-0.05, 0.4, 0.6), (0.0, 0.5, 0.64), (0.05, 0.5, 0.65))
    ]
    for name, build, setting in fixed:
        print(f"   | {name} | {routing_row(datas, lambda d, b=build, s=setting: b(d, *s))} |")
    print("   (columns: " + ", ".join(d["name"] for d in datas) + ", mean)")
    print(
        "   | held out | rule | chosen on the others | calibration recall / precision / controls kept | held-out recall / precision / controls kept |"
    )
    totals = {"global": [], "radius": []}
    for i, held in enumerate(datas):
        others = datas[:i] + datas[i + 1 :]
        for rule, grid, build in (
            ("global", global_grid, global_router),
            ("radius", radius_grid, radius_router),
        ):
            setting = best_setting(others, grid, build)
            cal = pooled([routing_scores(d, build(d, *setting)) for d in others])
            out = routing_scores(held, build(held, *setting))
            totals[rule].append(out)
            print(
                f"   | {held['name']} | {rule} | {setting} | {cal['recall']:.2f} / {cal['precision']:.2f} / "
                f"{cal['controls_kept']:.2f} | {out['recall']:.2f} / {out['precision']:.2f} / {out['controls_kept']:.2f} |"
            )
    for rule, rows in totals.items():
        m = pooled(rows)
        print(
            f"   {rule}, mean over held-out scenarios: recall {m['recall']:.3f}, precision {m['precision']:.3f}, controls kept {m['controls_kept']:.3f}"
        )
    for rule, grid, build in (("global", global_grid, global_router), ("radius", radius_grid, radius_router)):
        setting = best_setting(datas, grid, build)
        m = pooled([routing_scores(d, build(d, *setting)) for d in datas])
        print(
            f"   {rule} chosen on all scenarios: {setting}: recall {m['recall']:.3f}, precision {m['precision']:.3f}, controls kept {m['controls_kept']:.3f}"
        )


def base_answers(queries: list[str], max_tokens: int) -> list[str]:
    """The embedded chat model's greedy answers (llama.cpp), as the validator's base answers."""
    from backends.llama_runtime import prepare_llama_cpp
    from uno_local.paths import embedded_chat_model

    llm = prepare_llama_cpp().Llama(
        model_path=str(embedded_chat_model()), n_ctx=2048, n_threads=2, verbose=False
    )
    try:
        return [
            llm.create_chat_completion(
                messages=[{"role": "user", "content": q}], temperature=0, max_tokens=max_tokens, seed=42
            )["choices"][0]["message"]["content"]
            for q in queries
        ]
    finally:
        llm.close()


def section_repetition(n_queries: int, max_tokens: int, draws: int = 20000) -> None:
    """How far apart two sets of base answers' mean repetition fall by chance, at held-out sizes: the
    validator's margin must sit above that, or it refuses adapters that merely answer other queries."""
    from uno_local.quality import repetition_share

    print(f"\n## Repetition: base answers' repeated 3-grams ({n_queries} test queries, {max_tokens} tokens)")
    queries = [
        q for p in ROUTING_SCENARIOS for t in json.loads(p.read_text("utf-8"))["topics"] for q in t["test"]
    ]
    shares = np.array([repetition_share(a) for a in base_answers(queries[:n_queries], max_tokens)])
    print(
        f"   per answer: mean {shares.mean():.3f}, median {np.median(shares):.3f}, 90th {np.percentile(shares, 90):.3f}, max {shares.max():.3f}"
    )
    rng = np.random.default_rng(0)
    for k in (3, 5, 8):
        diffs = []
        for _ in range(draws):
            pick = rng.choice(len(shares), size=2 * k, replace=False)
            diffs.append(shares[pick[:k]].mean() - shares[pick[k:]].mean())
        diffs = np.array(diffs)
        print(
            f"   {k} held-out logs: difference of two base sets' means 95th {np.percentile(diffs, 95):.3f}, "
            f"99th {np.percentile(diffs, 99):.3f}; share above 0.05: {np.mean(diffs > 0.05):.3f}"
        )
    loops = ["a bit of " * 20, "Woof! Dogs need walks. " * 8, "- Change the water.\n" * 6]
    print("   looping answers of issue 21's kinds: " + ", ".join(f"{repetition_share(t):.2f}" for t in loops))


def predicted_by_model(scenario: dict) -> dict[str, list[str]]:
    """The embedded chat model's own predicted rules per training query (greedy, JSON schema)."""
    from backends.llama_runtime import prepare_llama_cpp
    from uno_local.paths import embedded_chat_model

    llm = prepare_llama_cpp().Llama(
        model_path=str(embedded_chat_model()), n_ctx=2048, n_threads=2, verbose=False
    )
    schema = {
        "type": "object",
        "required": ["rules"],
        "properties": {
            "rules": {"type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 120}}
        },
    }
    system = (
        "You analyse a user's query before it is answered. Write at most 5 short rules that would help "
        'answer it well, each one a positive instruction. Reply as JSON {"rules": [...]}.'
    )
    out = {}
    try:
        for topic in scenario["topics"]:
            for q in topic["train"]:
                reply = llm.create_chat_completion(
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": "## User Query\n\n" + q},
                    ],
                    response_format={"type": "json_object", "schema": schema},
                    temperature=0,
                    max_tokens=160,
                    seed=42,
                )
                try:
                    out[q] = [
                        s for s in json.loads(reply["choices"][0]["message"]["content"])["rules"] if s.strip()
                    ]
                except (ValueError, KeyError, TypeError):
                    out[q] = []
    finally:
        llm.close()
    return out


def section_gap(embedder, scenario: dict, model_prior: dict[str, list[str]] | None) -> None:
    print("\n## Rule novelty: per-log gap (min novelty) and per-topic cluster gap (mean)")
    priors = {"hand-written prior": None}
    if model_prior is not None:
        priors["SmolLM2-135M prior"] = model_prior
    for prior_name, prior in priors.items():
        for kind in ("habit", "predictable"):
            all_gaps, per_topic = [], []
            for topic in scenario["topics"]:
                habits = [topic["rule"]["text"], *topic["rule"]["feedback"], *PARAPHRASES[topic["name"]]]
                feedback = habits if kind == "habit" else PREDICTABLE[topic["name"]]
                gaps = []
                for i, q in enumerate(topic["train"]):
                    pred = HAND_PRIOR[topic["name"]] + [q] if prior is None else prior.get(q, [])
                    rule = feedback[i % len(feedback)]
                    gaps.append(log_gap(embedder.encode([rule]), embedder.encode(pred)))
                all_gaps += [g for g in gaps if g is not None]
                per_topic.append(f"{topic['name']} {cluster_gap(gaps):.3f}")
            p = np.percentile(all_gaps, [0, 50, 100])
            print(
                f"   {prior_name}, {kind} rules: log gap min {p[0]:.3f} median {p[1]:.3f} max {p[2]:.3f} "
                f"(n={len(all_gaps)}); cluster gap: {', '.join(per_topic)}"
            )


def section_consistency(embedder) -> None:
    """Leave-one-scenario-out: the rule-consistency cut (`uno.rule_consistency`) chosen on the other
    scenarios (most noise kept out, a lost genuine log weighing GENUINE_LOSS_WEIGHT), reported on the
    one left out."""
    print("\n## Rule consistency: noisy logs kept out of a topic's training, leave-one-scenario-out")
    datas = [consistency_data(embedder, p) for p in ROUTING_SCENARIOS]
    for d in datas:
        print(
            f"   {d['name']}: genuine {d['genuine'].size} logs, distance p50 {np.median(d['genuine']):.3f} "
            f"p95 {np.percentile(d['genuine'], 95):.3f} max {d['genuine'].max():.3f}; noisy "
            f"{d['noisy'].size} logs, min {d['noisy'].min() if d['noisy'].size else float('nan'):.3f} "
            f"p50 {np.median(d['noisy']) if d['noisy'].size else float('nan'):.3f}"
        )

    print("   | held out | cut chosen on the others | noisy kept out | genuine lost |")
    print("   |---|---|---|---|")
    outs, losts = [], []
    for i, d in enumerate(datas):
        others = datas[:i] + datas[i + 1 :]
        cut = best_cut(others)
        s = consistency_scores(d, cut)
        outs.append(s["noise_out"])
        losts.append(s["genuine_lost"])
        print(f"   | {d['name']} | {cut:.2f} | {s['noise_out']:.2f} | {s['genuine_lost']:.3f} |")
    print(f"   | **mean over held-out** | | {np.mean(outs):.2f} | {np.mean(losts):.3f} |")
    cut = best_cut(datas)
    print(f"   all scenarios: cut {cut:.2f}, score {consistency_score(datas, cut):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", type=Path, default=next((p for p in SCENARIOS if p.is_file()), SCENARIOS[0])
    )
    parser.add_argument("--ward", type=float, default=2.5)
    parser.add_argument("--min-size", type=int, default=6)
    parser.add_argument("--unseen", type=float, default=0.65)
    parser.add_argument("--model-prior", action="store_true", help="also use SmolLM2's own predicted rules")
    parser.add_argument(
        "--prior-file", type=Path, help="JSON cache of the model's predicted rules (read or written)"
    )
    parser.add_argument(
        "--repetition", type=int, metavar="N", help="only the repetition margin, on N base answers"
    )
    parser.add_argument(
        "--routing", action="store_true", help="only the leave-one-scenario-out routing calibration"
    )
    parser.add_argument(
        "--consistency", action="store_true", help="only the leave-one-scenario-out rule-consistency cut"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(2)
    from backends.embedder import SentenceEmbedder

    if args.repetition:
        section_repetition(args.repetition, 160)
        return
    scenario = json.loads(args.scenario.read_text(encoding="utf-8"))
    embedder = CachedEmbedder(SentenceEmbedder())
    if args.routing:
        section_routing(embedder)
        return
    if args.consistency:
        section_consistency(embedder)
        return
    section_clusters(embedder, scenario, args.ward, args.min_size)
    section_router(embedder, scenario, args.ward, args.min_size, args.unseen)
    prior = None
    if args.prior_file and args.prior_file.is_file():
        prior = json.loads(args.prior_file.read_text(encoding="utf-8"))
    elif args.model_prior:
        prior = predicted_by_model(scenario)
        if args.prior_file:
            args.prior_file.write_text(json.dumps(prior, indent=1), encoding="utf-8")
    section_gap(embedder, scenario, prior)


if __name__ == "__main__":
    main()
