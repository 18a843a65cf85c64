"""Leave-one-scenario-out calibration, the pure part: the eval scenarios -> each one's scores under a
routing rule or a rule-consistency cut, and the rules that choose a setting on the other scenarios.

`calibrate_thresholds.py --routing` and `--consistency` print their tables from these, and
`calibrate_nearest_query.py` scores its fallback router with the same routing functions. The embedder
is passed in (anything with `encode(texts) -> array`); nothing here prints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uno_local.cluster import Router, cluster_radius

ROOT = Path(__file__).resolve().parents[1]

ROUTING_SCENARIOS = [
    *sorted((ROOT / "assets" / "eval").glob("*.json")),
    ROOT / "tests/eval/data/example-scenario.json",
]
MARGINS = [-0.05, 0.0, 0.02, 0.04, 0.06, 0.08, 0.10]
FLOORS = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65]
CEILINGS = [0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
GLOBAL_CUTS = [0.5, 0.55, 0.6, 0.64, 0.65, 0.7, 0.75, 0.8, 0.85]
MIN_CONTROLS_KEPT = 0.95  # the acceptance for controls


def routing_data(embedder, scenario: dict) -> dict:
    """Clusters = the scenario's topics (their train queries), as the issue found the clustering right;
    on-topic probes = the test queries, off-topic probes = the scenario's own controls (chosen to be off
    its topics; other scenarios' controls and EXTRA_CONTROLS are not: some are on-topic here, e.g. a
    trivia control against a history or city-trivia topic, a sourdough question against baking)."""
    topics = scenario["topics"]
    members = [embedder.encode(t["train"]) for t in topics]
    cents = {k: m.mean(axis=0) for k, m in enumerate(members)}
    on = [(k, v) for k, t in enumerate(topics) for v in embedder.encode(t["test"])]
    off = list(embedder.encode(scenario["controls"]))
    return {"name": scenario["name"], "members": members, "cents": cents, "on": on, "off": off}


def routing_scores(data: dict, router: Router) -> dict[str, float]:
    """On-topic recall (test queries routed to their own topic), precision (routed queries, controls
    included, that went to the right topic) and the share of controls kept on the base model."""
    routed_on = [router.route(v)[0] for _, v in data["on"]]
    routed_off = [router.route(v)[0] for v in data["off"]]
    right = sum(label == k for (k, _), label in zip(data["on"], routed_on, strict=True))
    n_routed = sum(label is not None for label in routed_on + routed_off)
    return {
        "recall": right / len(routed_on),
        "precision": right / n_routed if n_routed else 1.0,
        "controls_kept": sum(label is None for label in routed_off) / len(routed_off),
    }


def radius_router(data: dict, margin: float, floor: float, ceiling: float) -> Router:
    radii = {k: cluster_radius(m, ceiling, margin, floor) for k, m in enumerate(data["members"])}
    return Router(data["cents"], unseen_distance=ceiling, radii=radii)


def routing_row(datas: list[dict], router_for) -> str:
    """Table cells: recall / precision / controls kept per scenario, then pooled, for `router_for(data)`."""
    rows = [routing_scores(d, router_for(d)) for d in datas]
    m = pooled(rows)
    cells = [f"{r['recall']:.2f} / {r['precision']:.2f} / {r['controls_kept']:.2f}" for r in rows]
    return " | ".join([*cells, f"{m['recall']:.3f} / {m['precision']:.3f} / {m['controls_kept']:.3f}"])


def pooled(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def best_setting(datas: list[dict], settings: list[tuple], build) -> tuple:
    """The setting with the best mean recall among those keeping >= 95% of controls on every scenario
    (then the best precision); when none does, the one keeping the most controls."""

    def score(setting):
        rows = [routing_scores(d, build(d, *setting)) for d in datas]
        worst_kept = min(r["controls_kept"] for r in rows)
        mean = pooled(rows)
        return (
            worst_kept >= MIN_CONTROLS_KEPT,
            mean["recall"] if worst_kept >= MIN_CONTROLS_KEPT else worst_kept,
            mean["precision"],
        )

    return max(settings, key=score)


# A plain base answer of the kind SmolLM2 writes: the corrections below are the scenarios' rewrites of it.
SAMPLE_ANSWER = (
    "Start by checking the basics. Then look at the details carefully, and keep notes as you go. "
    "Most problems have a simple cause, so try the easy fixes first. If it still fails, ask someone who knows."
)
CONSISTENCY_CUTS = [round(0.30 + 0.02 * i, 2) for i in range(31)]  # 0.30 .. 0.90
GENUINE_LOSS_WEIGHT = 5  # losing a genuine log costs five times what keeping a noisy one does


def consistency_data(embedder, path: Path, draws: int = 5) -> dict:
    """Each topic's cluster as the retrain would see it, `draws` times with the scenario's noise rate:
    a genuine log's rules are its comment's sentences and what its correction visibly changed (the
    distiller's fallback path, `distill.sentences` + `distill.correction_rules`); a noisy log's are its
    comment's sentences (a one-word "meh" has none, and does not vote). Returns the leave-one-out rule
    distances of genuine and noisy logs."""
    import random

    from uno_local.cluster import spread_distances
    from uno_local.distill import clean, correction_rules, sentences
    from uno_local.embedding import rules_text
    from uno_local.eval.checks import rewrite
    from uno_local.eval.scenario import load_scenario

    sc = load_scenario(path)
    rng = random.Random(sc.seed)
    genuine, noisy = [], []
    for _ in range(draws):
        for topic in sc.topics:
            rules, is_noise = [], []
            corrected = rewrite(SAMPLE_ANSWER, topic.rule.check)
            for _query in topic.train:
                if rng.random() < sc.noise.rate:
                    r = clean(sentences(rng.choice(sc.noise.feedback)))
                    noise = True
                else:
                    comment = rng.choice(topic.rule.feedback)
                    r = clean(sentences(comment) + correction_rules(SAMPLE_ANSWER, corrected))
                    noise = False
                if r:
                    rules.append(rules_text(r))
                    is_noise.append(noise)
            spread = spread_distances(embedder.encode(rules))
            for d, noise in zip(spread, is_noise, strict=True):
                (noisy if noise else genuine).append(float(d))
    return {"name": sc.name, "genuine": np.array(genuine), "noisy": np.array(noisy)}


def consistency_scores(d: dict, cut: float) -> dict[str, float]:
    return {
        "noise_out": float(np.mean(d["noisy"] > cut)) if d["noisy"].size else 1.0,
        "genuine_lost": float(np.mean(d["genuine"] > cut)),
    }


def consistency_score(datas: list[dict], cut: float) -> float:
    """Pooled over `datas`: the share of noisy logs kept out, less GENUINE_LOSS_WEIGHT times the share
    of genuine logs lost."""
    noisy = np.concatenate([x["noisy"] for x in datas])
    genuine = np.concatenate([x["genuine"] for x in datas])
    return float(np.mean(noisy > cut)) - GENUINE_LOSS_WEIGHT * float(np.mean(genuine > cut))


def best_cut(datas: list[dict]) -> float:
    """The cut in CONSISTENCY_CUTS with the best `consistency_score` on `datas` (the larger on a tie)."""
    return max(CONSISTENCY_CUTS, key=lambda c: (consistency_score(datas, c), c))
