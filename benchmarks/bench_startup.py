"""Start-up time of the `uno` CLI against `python -c pass`, in the same run.

Each round runs every command once as a fresh process, in turn, so machine noise hits them all
alike: `python -c pass` (the interpreter alone, the baseline), `uno --help`, `uno adapters` and
`uno status` on a data dir made by a first, unmeasured run, and `uno adapters` again with a
`uno.toml` (the settings check loads pydantic). Prints the median wall time of each, its ratio to
the baseline, what it adds to the baseline, its median CPU time (user + system: what the wall time
comes to on an idle machine, and far less disturbed by other jobs on the cores), and the target
(issue 15: on an idle 2-core machine, `--help` and `adapters` under 0.5 s, `status` under 1 s).
Usage: python benchmarks/bench_startup.py [--rounds 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNO = [sys.executable, "-m", "uno_local"]
CASES = [
    ("python -c pass", [sys.executable, "-c", "pass"], None, None),
    ("uno --help", [*UNO, "--help"], None, 0.5),
    ("uno adapters", [*UNO, "adapters"], None, 0.5),
    ("uno status", [*UNO, "status"], None, 1.0),
    ("uno adapters, with a uno.toml", [*UNO, "adapters"], "settings", None),
]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command` as a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="uno-bench-startup-") as tmp:
        homes = {None: Path(tmp) / "plain", "settings": Path(tmp) / "settings"}
        homes["settings"].mkdir(mode=0o700)
        (homes["settings"] / "uno.toml").write_text(
            "[generation]\ntemperature = 0.5\n\n[train]\nepochs = 2\n"
        )
        envs = {
            key: {
                **os.environ,
                "UNO_HOME": str(home),
                "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            }
            for key, home in homes.items()
        }
        for env in envs.values():  # the first run creates the data dir and the database: not measured
            timed([*UNO, "status"], env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in CASES}
        for _ in range(args.rounds):
            for name, command, home, _target in CASES:
                times[name].append(timed(command, envs[home]))

    base = statistics.median(wall for wall, _cpu in times[CASES[0][0]])
    rows = []
    for name, _command, _home, target in CASES:
        median = statistics.median(wall for wall, _cpu in times[name])
        rows.append(
            {
                "command": name,
                "median_s": round(median, 3),
                "ratio": round(median / base, 2),
                "added_s": round(median - base, 3),
                "cpu_s": round(statistics.median(cpu for _wall, cpu in times[name]), 3),
                "target_s": target,
            }
        )
    result = {"rounds": args.rounds, "cpus": os.cpu_count(), "load_1min": os.getloadavg()[0], "rows": rows}
    if args.json:
        print(json.dumps(result))
        return result
    print(f"{args.rounds} rounds, {os.cpu_count()} CPUs, 1-minute load {result['load_1min']:.1f} at the end")
    print(f"{'command':<32} {'median s':>9} {'x pass':>7} {'added s':>8} {'CPU s':>7} {'target s':>9}")
    for row in rows:
        target = f"< {row['target_s']}" if row["target_s"] else ""
        print(
            f"{row['command']:<32} {row['median_s']:>9.3f} {row['ratio']:>7.2f} {row['added_s']:>8.3f} "
            f"{row['cpu_s']:>7.3f} {target:>9}"
        )
    return result


if __name__ == "__main__":
    main()
