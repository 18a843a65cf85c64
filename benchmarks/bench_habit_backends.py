"""The habit-learning scenario of the adapters issue, trained with torch and with MLX on the same data:
adherence before and after, `uno retrain` wall time and peak memory per backend (issue 6's manual run).

The 40 cooking corrections of `tests/e2e/test_habit.py` (each adds the sign-off "Happy cooking!") are
answered once by the base model and imported into one data dir per backend, with the same settings
as that test; each backend's `uno retrain --json --backend NAME` runs in a child process, alone (its
peak RSS is the kernel's ru_maxrss for that child), and then answers the 10 unseen queries through
`uno ask --batch`. Prints each backend's figures and the MLX / torch wall-time ratio.

Usage: python benchmarks/bench_habit_backends.py [--backends torch,mlx] [--min-steps N] [--json]
(slow on a CPU: MLX trains about 14x slower than torch here; see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import LOG_TOKENS, TEST_CONFIG  # noqa: E402
from tests.e2e.test_habit import SIGN_OFF, TRAIN, UNSEEN, follows, habit_records  # noqa: E402

# Runs `uno` and, at exit, writes its own peak RSS (KiB) to $UNO_PEAK_FILE.
MEASURED = (
    "import atexit, os, resource, runpy, sys\n"
    "def peak():\n"
    "    kib = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))\n"
    "    open(os.environ['UNO_PEAK_FILE'], 'w').write(str(kib))\n"
    "atexit.register(peak)\n"
    "sys.argv = ['uno'] + sys.argv[1:]\n"
    "runpy.run_module('uno_local', run_name='__main__')\n"
)


def uno(home: Path, *args: str, peak_file: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNO_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    if peak_file is None:
        command = [sys.executable, "-m", "uno_local", *args]
    else:
        env["UNO_PEAK_FILE"] = str(peak_file)
        command = [sys.executable, "-c", MEASURED, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True)


def ask(home: Path, queries: list[str], max_tokens: int | None = None) -> list[dict]:
    src, out = home / "ask-in.jsonl", home / "ask-out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "query": q}) + "\n" for i, q in enumerate(queries)))
    limit = ["--max-tokens", str(max_tokens)] if max_tokens else []
    proc = uno(home, "ask", "--batch", str(src), "--out", str(out), *limit)
    if proc.returncode:
        raise SystemExit(f"uno ask failed: {proc.stderr.strip()[-500:]}")
    return [json.loads(line) for line in out.read_text().splitlines()]


def habit_logs(home: Path) -> list[dict]:
    answers = [a["response"] for a in ask(home, TRAIN, max_tokens=LOG_TOKENS)]
    return habit_records("habit", TRAIN, answers, f"Please always sign off with '{SIGN_OFF}'")


def run_backend(backend: str, logs_file: Path, config: str, base_rate: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "uno.toml").write_text(config)
        uno(home, "import", str(logs_file))
        start = time.perf_counter()
        proc = uno(home, "retrain", "--json", "--backend", backend, peak_file=home / "peak")
        wall = time.perf_counter() - start
        peak_kib = int((home / "peak").read_text()) if (home / "peak").is_file() else 0
        if proc.returncode:
            return {"backend": backend, "error": proc.stderr.strip()[-300:], "wall_s": round(wall, 1)}
        report = json.loads(proc.stdout)
        after = ask(home, UNSEEN)
    return {
        "backend": backend,
        "adherence_before": base_rate,
        "adherence_after": sum(follows(r["response"]) for r in after) / len(UNSEEN),
        "routes": sorted({r["route"] for r in after}),
        "wall_s": round(wall, 1),
        "train_s": report["stage_seconds"].get("train"),
        "stage_seconds": report["stage_seconds"],
        "peak_rss_gib": round(peak_kib / 2**20, 2),
        "deployed": report["deployed"],
        "decisions": [c["decision"] for c in report["clusters"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,mlx")
    parser.add_argument("--min-steps", type=int, help="Override train.min_steps (fewer steps for MLX here).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = TEST_CONFIG + (f"min_steps = {args.min_steps}\n" if args.min_steps else "")
    work = Path(tempfile.mkdtemp(prefix="uno-habit-"))
    try:
        (work / "uno.toml").write_text(config)
        logs_file = work / "logs.jsonl"
        logs_file.write_text("".join(json.dumps(r) + "\n" for r in habit_logs(work)))
        base_rate = sum(follows(r["response"]) for r in ask(work, UNSEEN)) / len(UNSEEN)
        results = [run_backend(b.strip(), logs_file, config, base_rate) for b in args.backends.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"{r['backend']}: retrain failed after {r['wall_s']:.0f} s: {r['error']}")
        else:
            print(
                f"{r['backend']}: adherence {r['adherence_before']:.0%} -> {r['adherence_after']:.0%} "
                f"(routes {r['routes']}), retrain {r['wall_s']:.0f} s (train {r['train_s']:.0f} s), "
                f"peak RSS {r['peak_rss_gib']:.2f} GiB; {r['decisions']}; stages (s) {r['stage_seconds']}"
            )
    walls = {r["backend"]: r["wall_s"] for r in results if "error" not in r}
    if not args.json and {"torch", "mlx"} <= walls.keys():
        print(f"MLX / torch retrain wall time: {walls['mlx'] / walls['torch']:.1f}x")


if __name__ == "__main__":
    main()
