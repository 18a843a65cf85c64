"""Wall time and peak memory of `uno retrain` for N logs on this machine (targets on 2 CPU cores for
200 logs: under 15 minutes and 3 GiB; 10 new logs in one topic after a full retrain: under 3 minutes).

The logs come from the shipped scenarios (assets/eval/*.json): each train query is answered by the
base model, and the simulated user gives its feedback (a correction that follows the topic's rule,
or noise). `uno retrain --json` then runs in a child process, alone; its peak RSS is read from the
kernel (ru_maxrss of the child). Prints each size's time and memory against the targets, as ratios.
`--precision bf16` writes `[train] precision` into the run's uno.toml (the default is fp32), and
`--lora-layers N` writes `[train] lora_layers` (LoRA on the last N layers; the default is every layer).
`--incremental 10` instead retrains one scenario's logs (`--scenario`, every topic's queries but the
last 10 of its first topic), then imports those 10 into the same data dir and retrains again: only
their topic's cluster should train (target under 180 s); the others are reused.
Usage: python benchmarks/bench_retrain.py [--sizes 50,100,200 | --incremental 10 [--scenario NAME]]
[--precision fp32|bf16|auto] [--lora-layers 16] [--json]
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_S, INCREMENTAL_TARGET_S, TARGET_GIB = 900.0, 180.0, 3.0  # issue 18: 200 logs; 10 new logs in one topic


def answer_logs(picks, rng: random.Random, answer_tokens: int = 96) -> list[dict]:
    """One log record per (scenario, topic, query): the base model's answer and the simulated feedback."""
    from uno_local.app import App
    from uno_local.eval.simuser import simulate_feedback
    from uno_local.runtime import GenerationSettings, complete

    with tempfile.TemporaryDirectory() as tmp:
        app = App.open(home=Path(tmp))
        settings = GenerationSettings.greedy(answer_tokens)
        records = []
        for i, (scenario, topic, query) in enumerate(picks):
            answer = complete(app.runtime, [{"role": "user", "content": query}], settings)[0]
            fb = simulate_feedback(scenario, topic, query, answer, rng)
            records.append(
                {
                    "id": f"bench-{scenario.name}-{i}",
                    "messages": [
                        {"role": "user", "content": query},
                        {"role": "assistant", "content": answer},
                    ],
                    "feedback": {"rating": fb.rating, "comment": fb.comment, "correction": fb.correction},
                }
            )
        app.close()
    return records


def make_logs(n: int) -> list[dict]:
    """n log records from every shipped scenario's topics, answered by the base model."""
    from uno_local.eval.scenario import load_scenario

    pool = []
    for path in sorted((ROOT / "assets" / "eval").glob("*.json")):
        scenario = load_scenario(path)
        pool += [(scenario, topic, q) for topic in scenario.topics for q in topic.train + topic.test]
    rng = random.Random(0)
    rng.shuffle(pool)
    return answer_logs([pool[i % len(pool)] for i in range(n)], rng)


def incremental_logs(scenario_name: str, new: int) -> tuple[list[dict], list[dict]]:
    """(first logs, new logs) from one shipped scenario: every topic's train and test queries, except
    the last `new` of its first topic, which come later, all in that one topic."""
    from uno_local.eval.scenario import load_scenario

    scenario = load_scenario(ROOT / "assets" / "eval" / f"{scenario_name}.json")
    picks = [(scenario, topic, q) for topic in scenario.topics for q in topic.train + topic.test]
    first_topic = len(scenario.topics[0].train) + len(scenario.topics[0].test)
    later = picks[first_topic - new : first_topic]
    records = answer_logs([p for p in picks if p not in later] + later, random.Random(0))
    return records[:-new], records[-new:]


def run_watched(command: list[str], env: dict) -> tuple[int, str, str, str | None]:
    """Run `command` (a retrain with `--progress-jsonl`), following its stages on stderr and its memory
    high-water mark (VmHWM in /proc, Linux) twice a second: (exit code, stdout, the other stderr lines,
    the stage during which the high-water mark last rose, None where /proc has none)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        stage, other = {"now": "start"}, []

        def follow() -> None:
            for line in proc.stderr:
                try:
                    stage["now"] = json.loads(line)["stage"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    other.append(line)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        high, peak_stage = 0, None
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                hwm = int(status.split("VmHWM:")[1].split()[0])
            except (OSError, IndexError, ValueError):
                hwm = 0
            if hwm > high:
                high, peak_stage = hwm, stage["now"]
            time.sleep(0.5)
        reader.join()
        out.seek(0)
        return proc.returncode, out.read(), "".join(other), peak_stage


def retrain(home: str, records: list[dict], settings: list[str]) -> dict:
    """Import `records` into `home`, then time `uno retrain --json` in a child process."""
    env = {**os.environ, "UNO_HOME": home, "HF_HUB_OFFLINE": "1"}
    if settings:
        (Path(home) / "uno.toml").write_text("[train]\n" + "\n".join(settings) + "\n")
    logs = Path(home) / "logs.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in records))
    subprocess.run(
        [sys.executable, "-m", "uno_local", "import", str(logs)], env=env, check=True, capture_output=True
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    code, out, err, peak_stage = run_watched(
        [sys.executable, "-m", "uno_local", "retrain", "--json", "--progress-jsonl"], env
    )
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(out) if code == 0 else {"error": err.strip()[-300:]}
    return {
        "logs": len(records),
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(max(peak_kib, before) / 2**20, 2),  # the max over every child so far
        "peak_stage": peak_stage,  # the stage during which the child's memory high-water mark last rose
        "stage_seconds": report.get("stage_seconds"),
        "clusters": [
            {k: c.get(k) for k in ("label", "size", "route", "win_rate", "gap", "reused")}
            for c in report.get("clusters", [])
        ],
        "trained_tokens": report.get("trained_tokens"),
        "gap_skipped_tokens": report.get("gap_skipped_tokens"),
        "error": report.get("error"),
    }


def train_settings(precision: str | None, lora_layers: int | None) -> list[str]:
    return ([f'precision = "{precision}"'] if precision else []) + (
        [f"lora_layers = {lora_layers}"] if lora_layers is not None else []
    )


def describe(result: dict, target_s: float) -> str:
    return (
        f"{result['wall_s']:.0f} s ({result['wall_s'] / target_s:.2f} of its {target_s:.0f} s target), peak RSS "
        f"{result['peak_rss_gib']:.2f} GiB ({result['peak_rss_gib'] / TARGET_GIB:.2f} of 3 GiB, peak in "
        f"{result['peak_stage']}); trained tokens "
        f"{result['trained_tokens']}; stages {result['stage_seconds']}; clusters "
        f"{[(c['size'], c['route'], c['win_rate'], 'reused' if c['reused'] else 'trained') for c in result['clusters']]}"
        + (f"; ERROR {result['error']}" if result["error"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], help="[train] precision")
    parser.add_argument("--lora-layers", type=int, help="[train] lora_layers (LoRA on the last N layers)")
    parser.add_argument(
        "--incremental",
        type=int,
        metavar="N",
        help="instead of --sizes: retrain a scenario's logs, then again after N new logs in one topic",
    )
    parser.add_argument("--scenario", default="cooking-signoff", help="the scenario of --incremental")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = train_settings(args.precision, args.lora_layers)
    if args.incremental:
        first, new = incremental_logs(args.scenario, args.incremental)
        with tempfile.TemporaryDirectory() as home:
            full = retrain(home, first, settings)
            again = retrain(home, new, settings)
        if args.json:
            print(json.dumps({"full": full, "incremental": again}), flush=True)
        else:
            print(f"full retrain, {len(first)} logs: " + describe(full, TARGET_S), flush=True)
            print(
                f"incremental retrain, {len(new)} new logs in one topic: {describe(again, INCREMENTAL_TARGET_S)}; "
                f"{again['wall_s'] / full['wall_s']:.2f} of the full retrain's time",
                flush=True,
            )
        return
    records = make_logs(max(int(s) for s in args.sizes.split(",")))
    for n in (int(s) for s in args.sizes.split(",")):  # smallest first: children's ru_maxrss only grows
        with tempfile.TemporaryDirectory() as home:
            result = retrain(home, records[:n], settings)
        print(
            json.dumps(result) if args.json else f"retrain {n} logs: " + describe(result, TARGET_S),
            flush=True,
        )


if __name__ == "__main__":
    main()
