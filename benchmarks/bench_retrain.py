"""Wall time and peak memory of `uno retrain` for N logs on this machine (targets on 2 CPU cores for
200 logs: under 15 minutes and 3 GiB for the full UNO loop; the adapters issue asked 10 minutes).

The logs come from the shipped scenarios (assets/eval/*.json): each train query is answered by the
base model, and the simulated user gives its feedback (a correction that follows the topic's rule,
or noise). `uno retrain --json` then runs in a child process, alone; its peak RSS is read from the
kernel (ru_maxrss of the child). Prints each size's time and memory against the targets, as ratios.
`--precision bf16` writes `[train] precision` into the run's uno.toml (the default is fp32), and
`--lora-layers N` writes `[train] lora_layers` (LoRA on the last N layers; the default is every layer).
Usage: python benchmarks/bench_retrain.py [--sizes 50,100,200] [--precision fp32|bf16|auto] [--lora-layers 16]
[--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_S, ADAPTERS_TARGET_S, TARGET_GIB = 900.0, 600.0, 3.0  # the full UNO loop; the adapters issue


def make_logs(n: int, answer_tokens: int = 96) -> list[dict]:
    """n log records from every shipped scenario's topics, answered by the base model."""
    from uno_local.app import App
    from uno_local.eval.scenario import load_scenario
    from uno_local.eval.simuser import simulate_feedback
    from uno_local.runtime import GenerationSettings, complete

    pool = []
    for path in sorted((ROOT / "assets" / "eval").glob("*.json")):
        scenario = load_scenario(path)
        pool += [(scenario, topic, q) for topic in scenario.topics for q in topic.train + topic.test]
    rng = random.Random(0)
    rng.shuffle(pool)
    picks = [pool[i % len(pool)] for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        app = App.open(home=Path(tmp))
        settings = GenerationSettings.greedy(answer_tokens)
        records = []
        for i, (scenario, topic, query) in enumerate(picks):
            answer = complete(app.runtime, [{"role": "user", "content": query}], settings)[0]
            fb = simulate_feedback(scenario, topic, query, answer, rng)
            records.append(
                {
                    "id": f"bench-{i}",
                    "messages": [
                        {"role": "user", "content": query},
                        {"role": "assistant", "content": answer},
                    ],
                    "feedback": {"rating": fb.rating, "comment": fb.comment, "correction": fb.correction},
                }
            )
        app.close()
    return records


def run_size(records: list[dict], precision: str | None = None, lora_layers: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "UNO_HOME": home, "HF_HUB_OFFLINE": "1"}
        settings = ([f'precision = "{precision}"'] if precision else []) + (
            [f"lora_layers = {lora_layers}"] if lora_layers is not None else []
        )
        if settings:
            (Path(home) / "uno.toml").write_text("[train]\n" + "\n".join(settings) + "\n")
        logs = Path(home) / "logs.jsonl"
        logs.write_text("".join(json.dumps(r) + "\n" for r in records))
        subprocess.run(
            [sys.executable, "-m", "uno_local", "import", str(logs)], env=env, check=True, capture_output=True
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "uno_local", "retrain", "--json"], env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        report = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr.strip()[-300:]}
    return {
        "logs": len(records),
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(max(peak_kib, before) / 2**20, 2),  # the max over every child so far
        "stage_seconds": report.get("stage_seconds"),
        "clusters": [
            {k: c.get(k) for k in ("label", "size", "route", "win_rate", "gap")}
            for c in report.get("clusters", [])
        ],
        "trained_tokens": report.get("trained_tokens"),
        "gap_skipped_tokens": report.get("gap_skipped_tokens"),
        "error": report.get("error"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], help="[train] precision")
    parser.add_argument("--lora-layers", type=int, help="[train] lora_layers (LoRA on the last N layers)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    records = make_logs(max(sizes))
    results = []
    for n in sizes:  # smallest first: ru_maxrss of children only grows, so each peak is its own
        result = run_size(records[:n], args.precision, args.lora_layers)
        results.append(result)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(
                f"retrain {n} logs: {result['wall_s']:.0f} s ({result['wall_s'] / TARGET_S:.2f} of the UNO "
                f"loop's 900 s target, {result['wall_s'] / ADAPTERS_TARGET_S:.2f} of the adapters issue's 600 s), "
                f"peak RSS {result['peak_rss_gib']:.2f} GiB ({result['peak_rss_gib'] / TARGET_GIB:.2f} "
                f"of 3 GiB); trained tokens {result['trained_tokens']}; stages {result['stage_seconds']}; clusters "
                f"{[(c['size'], c['route'], c['win_rate']) for c in result['clusters']]}"
                + (f"; ERROR {result['error']}" if result["error"] else ""),
                flush=True,
            )


if __name__ == "__main__":
    main()
