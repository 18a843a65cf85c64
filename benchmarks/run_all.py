"""Run every benchmark and the evaluation, one after another (never in parallel: 2 cores are shared).

Usage: python benchmarks/run_all.py [--quick] [--out DIR]
Each benchmark prints its ratio against a baseline measured in the same run; the results are
also written as JSON lines to DIR/benchmarks.jsonl so docs/benchmarks.md can quote them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(name: str, command: list[str], out: Path) -> None:
    print(f"== {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
    print(result.stdout, end="")
    if result.returncode != 0:
        print(result.stderr[-2000:], file=sys.stderr)
    with (out / "benchmarks.jsonl").open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "name": name,
                    "command": " ".join(command),
                    "rc": result.returncode,
                    "seconds": round(time.perf_counter() - start, 1),
                    "stdout": result.stdout[-4000:],
                }
            )
            + "\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sizes (minutes, not an hour).")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "benchmarks")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    sizes = "50" if args.quick else "50,100,200"
    run("startup", [py, "benchmarks/bench_startup.py"], args.out)
    run("generation", [py, "benchmarks/bench_generation.py"], args.out)
    run("batch", [py, "benchmarks/bench_batch.py"], args.out)
    run("adapters", [py, "benchmarks/bench_adapters.py"], args.out)
    run("trainer", [py, "benchmarks/bench_trainer.py"], args.out)
    run("train-floor", [py, "benchmarks/bench_train_floor.py", "--tokens", "307546"], args.out)
    run("forward-size", [py, "benchmarks/bench_forward_size.py"], args.out)
    run("retrain", [py, "benchmarks/bench_retrain.py", "--sizes", sizes], args.out)
    if not args.quick:  # MLX trains about 14x slower than torch on a CPU: the full run only
        run("habit-backends", [py, "benchmarks/bench_habit_backends.py"], args.out)
    scenario = (
        "assets/eval/quick.json"
        if args.quick
        else str(ROOT.parent / "shared" / "eval" / "example-scenario.json")
    )
    run(
        "eval",
        [py, "-m", "uno_local", "eval", "--scenario", scenario, "--out", str(args.out / "eval")]
        + (["--quick"] if args.quick else []),
        args.out,
    )


if __name__ == "__main__":
    main()
