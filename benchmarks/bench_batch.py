"""Batched generation (`runtime.generate_many`) against single-stream answers of the same prompts.

The loop's stages and the eval answer hundreds of short, independent prompts. The baseline answers
them one after another through `runtime.stream` (today's path); then `generate_many` answers the same
prompts at batch 1, 4, 8 and 16. Both count generated tokens over wall time, prompt reading
included, in the same run; the baseline runs first and last and its mean is the reference. Prints
tokens/s and the ratio to single-stream per batch size (target: >= 3x at the best batch size on 2
cores for the embedded model), and the share of greedy answers identical to single-stream ones.
Tokens per CPU-second (this process's CPU time) are printed beside: on a machine shared with other
jobs, wall time mostly measures the scheduler.

`--steps` prints instead the CPU time of one bare `llama_decode` step per batch size (no sampling,
no Python per token): how a step's cost grows with the number of sequences. `--model` takes another
GGUF (say, a requantized copy) for either measure.

Usage: python benchmarks/bench_batch.py [--threads 2] [--prompts 32] [--max-tokens 64] [--steps] [--json]
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


def decode_steps(runtime, sizes: list[int], steps: int = 20) -> dict[int, float]:
    """CPU milliseconds per bare decode step with `size` sequences, after their prompts are read."""
    import llama_cpp as lc

    from backends.batch_generator import BatchGenerator

    gen = BatchGenerator(runtime.llm, n_parallel=max(sizes))
    gen.set_threads(runtime._threads, runtime._threads)
    prompt, _ = runtime._chat_prompt([{"role": "user", "content": "Tell me about tea."}])
    batch, out = gen._batch, {}

    def put(i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
        batch.seq_id[i][0] = seq

    for size in sizes:
        lc.llama_memory_clear(gen._memory, True)
        for seq in range(size):
            for i, token in enumerate(prompt):
                put(i, token, i, seq, i == len(prompt) - 1)
            batch.n_tokens = len(prompt)
            assert lc.llama_decode(gen.ctx, batch) == 0
        cpu = time.process_time()
        for k in range(steps):
            for seq in range(size):
                put(seq, prompt[k % len(prompt)], len(prompt) + k, seq, True)
            batch.n_tokens = size
            assert lc.llama_decode(gen.ctx, batch) == 0
        out[size] = (time.process_time() - cpu) / steps * 1000
    gen.close()
    return out


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument("--model", type=Path, help="Another GGUF instead of the embedded model.")
    parser.add_argument("--steps", action="store_true", help="Bare decode-step CPU time per batch size.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from backends import open_runtime
    from uno_local.paths import embedded_chat_model
    from uno_local.runtime import GenerationSettings

    runtime = open_runtime(args.model or embedded_chat_model(), n_ctx=2048, n_threads=args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.steps:
        ms = decode_steps(runtime, sizes)
        runtime.close()
        for size, step in ms.items():
            print(f"batch {size:>2}: {step:6.1f} CPU ms per step, {step / size:5.1f} per token")
        print(f"gain per token at batch {sizes[-1]}: {ms[sizes[0]] / (ms[sizes[-1]] / sizes[-1]):.2f}x")
        return {"benchmark": "batch-steps", "cpu_ms_per_step": ms}
    settings = GenerationSettings.greedy(max_tokens=args.max_tokens)
    messages = prompts(args.prompts)
    single_stream(runtime, messages[:2], settings), batched(runtime, messages[:2], settings, 2)  # warm-up
    first = single_stream(runtime, messages, settings)
    rows = []
    for size in sizes:
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
