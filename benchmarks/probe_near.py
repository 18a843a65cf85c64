"""The validator's near questions for one cluster of a kept eval home, and its deployed Expert's answers.

    UNO_HOME=DIR uno eval --scenario assets/eval/travel-format.json --out DIR/report --keep DIR/keep
    .venv/bin/python benchmarks/probe_near.py DIR/keep 1 [--greedy | --practice N]

With `--practice N`: the questions an Expert would practise on instead (`retrain/train.practice_logs`:
N lists sampled from `retrain/train.PRACTICE_SEED`, reworded questions of the cluster's kept), each with
the base model's answer and its share of repeated word 3-grams beside the cluster's logged answers'
(docs/eval.md, session 33: the example scenario's gardening cluster).

Writes the near questions as `retrain/validate.near_of` does (`validate.near_prompts` continued by the base
model, sampled with `validate.NEAR_SEED` onwards, or greedy; `validate.near_questions`;
`cluster.near_and_new` with the cluster's stored radius), then answers them with the cluster's deployed
Expert, greedy at 160 tokens with the home's DRY setting, each checked against the checkable distilled
rules of the cluster's logs in turn (`judge.rule_check`), and prints how many follow. docs/eval.md
(session 32) used it on travel-format's lowercase cluster.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("home", type=Path, help="a kept eval home (uno eval --keep DIR)")
    parser.add_argument("label", type=int, help="the cluster's label (`uno rules` lists them)")
    parser.add_argument("--greedy", action="store_true", help="greedy continuations instead of sampled")
    parser.add_argument("--practice", type=int, default=0, help="N: the practice questions and base answers")
    args = parser.parse_args()

    from uno_local.app import App
    from uno_local.cluster import near_and_new
    from uno_local.judge import rule_check
    from uno_local.pair import drop_repeated_lines
    from uno_local.quality import repetition_share
    from uno_local.retrain.train import PRACTICE_SEED
    from uno_local.runtime import GenerationRequest, GenerationSettings
    from uno_local.validate import (
        NEAR_QUESTIONS,
        NEAR_SEED,
        NEAR_TEMPERATURE,
        NEAR_TOKENS,
        NEAR_TOP_P,
        checkable,
        near_prompts,
        near_questions,
    )

    db = sqlite3.connect(args.home / "uno.db")
    members, centroid, radius = db.execute(
        "SELECT members, centroid, radius FROM clusters WHERE label = ?", (args.label,)
    ).fetchone()
    members, centroid = json.loads(members), np.asarray(json.loads(centroid))
    # A simulated log is a user message followed by the answer its feedback is on (the member id).
    queries = [
        db.execute("SELECT content FROM messages WHERE id = ?", (m - 1,)).fetchone()[0] for m in members
    ]
    asked = [row[0] for row in db.execute("SELECT content FROM messages WHERE role = 'user'")]
    guides = []
    for m in members:
        row = db.execute(
            "SELECT data FROM artifacts WHERE stage = 'distill' AND key = ?", (str(m),)
        ).fetchone()
        rules = json.loads(row[0])["rules"] if row else []
        if checkable(rules):
            guides.append(rules)
    app = App.open(home=args.home)
    runtime = app.runtime
    seed = PRACTICE_SEED if args.practice else NEAR_SEED
    requests = [
        GenerationRequest(
            [],
            GenerationSettings.greedy(NEAR_TOKENS)
            if args.greedy
            else GenerationSettings(NEAR_TEMPERATURE, NEAR_TOP_P, NEAR_TOKENS, seed + i),
            stop=("\n",),
            continuation=prompt,
        )
        for i, prompt in enumerate(near_prompts(queries, args.practice or NEAR_QUESTIONS))
    ]
    written = near_questions([r.text for r in runtime.generate_many(requests)], asked)
    vecs = app.embedder.encode(written + queries)
    kept = [
        q
        for q, k in zip(
            written,
            near_and_new(
                vecs[: len(written)],
                vecs[len(written) :],
                centroid,
                radius or app.config.uno.unseen_distance,
                unlike_members=not args.practice,
            ),
            strict=True,
        )
        if k
    ]
    print(f"{len(requests)} lists continued: {len(written)} new questions, {len(kept)} near and new")
    settings = GenerationSettings.greedy(160, app.config.generation.dry_multiplier)
    if args.practice:
        logged = [
            db.execute("SELECT content FROM messages WHERE id = ?", (m,)).fetchone()[0] for m in members
        ]
        shares = sorted(round(repetition_share(drop_repeated_lines(a)), 2) for a in logged)
        print(f"repeated 3-grams of the cluster's logged answers: {shares}")
        base = runtime.generate_many(
            [GenerationRequest([{"role": "user", "content": q}], settings) for q in kept]
        )
        for question, answer in zip(kept, (r.text for r in base), strict=True):
            answer = drop_repeated_lines(answer)
            print(f"{repetition_share(answer):.2f} | {question} | {answer[:90]!r}")
        return
    path = db.execute(
        "SELECT path FROM adapters WHERE cluster = ? AND status = 'deployed' AND kind = 'expert'",
        (str(args.label),),
    ).fetchone()
    if not (path and kept and guides):
        print("no deployed Expert, no near question or no checkable rule: nothing to answer")
        return
    folder = Path(path[0])
    runtime.load_adapter("expert", next(folder.glob("*.gguf")) if folder.is_dir() else folder)
    answers = [
        r.text
        for r in runtime.generate_many(
            [GenerationRequest([{"role": "user", "content": q}], settings, adapter="expert") for q in kept]
        )
    ]
    follow = 0
    for i, (question, answer) in enumerate(zip(kept, answers, strict=True)):
        ok = rule_check(answer, guides[i % len(guides)]) is True
        follow += ok
        print(f"{'follows' if ok else 'misses '} | {question} | {answer[:90]!r}")
    print(f"{follow} of {len(kept)} answers follow the cluster's rules")


if __name__ == "__main__":
    main()
