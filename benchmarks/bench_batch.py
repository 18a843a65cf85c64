"""Batched generation (`runtime.generate_many`) against single-stream answers of the same prompts.

The loop's stages and the eval answer hundreds of short, independent prompts. The baseline answers
them one after another through `runtime.stream` (today's path); then `generate_many` answers the same
prompts at batch 1, 4, 8 and 16. Both count generated tokens over wall time, prompt reading
included, in the same run; the baseline runs first and last and its mean is the reference. Prints
tokens/s and the ratio to single-stream per batch size (target: >= 3x at the best batch size on 2
cores for the embedded model), and the share of greedy answers identical to single-stream ones.
Tokens per CPU-second (this process's CPU time) are printed beside: on a machine shared with other
jobs, wall time mostly measures the scheduler.

Usage: python benchmarks/bench_batch.py [--threads 2] [--prompts 32] [--max-tokens 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOPICS = [
    "boiling an egg",
    "watering tomatoes",
    "a morning stretch",
    "saving money",
    "writing a polite email",
    "learning a language",
    "the French Revolution",
    "pruning roses",
    "a good night's sleep",
    "making tea",
    "running a first 5 km",
    "repotting a cactus",
    "the Roman Empire",
    "cleaning a bicycle chain",
    "a healthy breakfast",
    "composting kitchen scraps",
]
FORMS = ["Give me one short tip about {}.", "In two sentences, what should a beginner know about {}?"]


def prompts(n: int) -> list[list[dict]]:
    questions = [form.format(topic) for form in FORMS for topic in TOPICS]
    return [[{"role": "user", "content": q}] for q in (questions * (n // len(questions) + 1))[:n]]


def single_stream(runtime, messages: list[list[dict]], settings) -> tuple[float, int, list[str]]:
    from uno_local.runtime import complete

    start, cpu = time.perf_counter(), time.process_time()
    texts, tokens = [], 0
    for m in messages:
        text, stats = complete(runtime, m, settings)
        texts.append(text)
        tokens += stats.completion_tokens if stats else 0
    return time.perf_counter() - start, tokens, texts, time.process_time() - cpu


def batched(runtime, messages: list[list[dict]], settings, size: int) -> tuple[float, int, list[str]]:
    from uno_local.runtime import GenerationRequest

    start, cpu = time.perf_counter(), time.process_time()
    results = runtime.generate_many([GenerationRequest(m, settings) for m in messages], n_parallel=size)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return elapsed, sum(len(r.tokens) for r in results), [r.text for r in results], cpu


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from backends import open_runtime
    from uno_local.paths import embedded_chat_model
    from uno_local.runtime import GenerationSettings

    runtime = open_runtime(embedded_chat_model(), n_ctx=2048, n_threads=args.threads)
    settings = GenerationSettings.greedy(max_tokens=args.max_tokens)
    messages = prompts(args.prompts)
    single_stream(runtime, messages[:2], settings), batched(runtime, messages[:2], settings, 2)  # warm-up
    first = single_stream(runtime, messages, settings)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        seconds, tokens, texts, cpu = batched(runtime, messages, settings, size)
        same = sum(a == b for a, b in zip(texts, first[2], strict=True))
        rows.append({"batch": size, "seconds": seconds, "cpu_s": cpu, "tokens": tokens, "identical": same})
    last = single_stream(runtime, messages, settings)
    runtime.close()
    base_tps = (first[1] + last[1]) / (first[0] + last[0])
    base_cpu = (first[1] + last[1]) / (first[3] + last[3])
    for row in rows:
        row["tokens_per_s"] = row["tokens"] / row["seconds"]
        row["ratio"] = row["tokens_per_s"] / base_tps
        row["tokens_per_cpu_s"] = row["tokens"] / row["cpu_s"]
        row["cpu_ratio"] = row["tokens_per_cpu_s"] / base_cpu
    result = {
        "benchmark": "batch",
        "threads": args.threads,
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "single_stream": {
            "tokens_per_s": base_tps,
            "tokens_per_cpu_s": base_cpu,
            "runs_tokens_per_s": [first[1] / first[0], last[1] / last[0]],
        },
        "batched": rows,
        "best_ratio": max(row["ratio"] for row in rows),
        "target": 3.0,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.prompts} prompts, greedy, max {args.max_tokens} tokens, {args.threads} threads\n"
            f"single-stream: {base_tps:.1f} tokens/s (first run {result['single_stream']['runs_tokens_per_s'][0]:.1f},"
            f" last {result['single_stream']['runs_tokens_per_s'][1]:.1f}); {base_cpu:.1f} tokens/CPU-s"
        )
        print(
            f"{'batch':>5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'ratio':>6} {'tok/CPU-s':>9} {'ratio':>6} identical"
        )
        for row in rows:
            print(
                f"{row['batch']:>5} {row['tokens']:>7} {row['seconds']:>8.1f} {row['tokens_per_s']:>9.1f}"
                f" {row['ratio']:>5.2f}x {row['tokens_per_cpu_s']:>9.1f} {row['cpu_ratio']:>5.2f}x"
                f" {row['identical']:>3}/{args.prompts}"
            )
        print(f"best ratio {result['best_ratio']:.2f}x (target >= 3x)")
    return result


if __name__ == "__main__":
    main()
