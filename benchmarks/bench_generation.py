"""Generation speed of `uno ask`'s path against bare llama-cpp-python, in the same run.

Both load the same GGUF with the same threads and context; each round answers the same prompt
greedily, alternating the two so machine noise hits both. Prints tokens/s, time to first token
and the ratio (target >= 0.95). Usage: python benchmarks/bench_generation.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = [{"role": "user", "content": "Write a detailed guide to planting a vegetable garden, step by step."}]


def bare_round(llm, max_tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first = None
    count = 0
    for chunk in llm.create_chat_completion(
        messages=PROMPT, stream=True, temperature=0.0, max_tokens=max_tokens
    ):
        if chunk["choices"][0]["delta"].get("content"):
            count += 1
            first = first or time.perf_counter()
    end = time.perf_counter()
    return (count - 1) / (end - first), (first - start) * 1000, count


def uno_round(app, max_tokens: int) -> tuple[float, float, int]:
    conversation = app.store.new_conversation("bench")
    settings = app.settings(greedy=True, max_tokens=max_tokens)
    turn = app.chat.send(conversation, PROMPT[0]["content"], settings, source="ask")
    for _ in turn:
        pass
    stats = turn.stats
    return stats.tokens_per_s, stats.ttft_ms, stats.completion_tokens


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from backends.llama_runtime import prepare_llama_cpp
    from uno_local.app import App, Overrides
    from uno_local.paths import embedded_chat_model

    model = embedded_chat_model()
    with tempfile.TemporaryDirectory() as home:
        app = App.open(Overrides(threads=args.threads, n_ctx=2048), home=Path(home))
        app.config.generation.system_prompt = ""
        bare = prepare_llama_cpp().Llama(
            str(model), n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
        )
        bare_round(bare, 16), uno_round(app, 16)  # warm-up
        bare_runs, uno_runs = [], []
        for _ in range(args.rounds):
            bare.reset()
            bare_runs.append(bare_round(bare, args.max_tokens))
            app.runtime.llm.reset()
            uno_runs.append(uno_round(app, args.max_tokens))
        bare.close()
        app.close()
    result = {
        "benchmark": "generation",
        "rounds": args.rounds,
        "tokens": uno_runs[0][2],
        "bare_tokens_per_s": statistics.median(r[0] for r in bare_runs),
        "uno_tokens_per_s": statistics.median(r[0] for r in uno_runs),
        "bare_ttft_ms": statistics.median(r[1] for r in bare_runs),
        "uno_ttft_ms": statistics.median(r[1] for r in uno_runs),
    }
    result["ratio"] = result["uno_tokens_per_s"] / result["bare_tokens_per_s"]
    result["target"] = ">= 0.95"
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"generation: uno {result['uno_tokens_per_s']:.1f} tok/s vs bare llama-cpp-python "
            f"{result['bare_tokens_per_s']:.1f} tok/s -> ratio {result['ratio']:.3f} (target >= 0.95); "
            f"TTFT uno {result['uno_ttft_ms']:.0f} ms vs bare {result['bare_ttft_ms']:.0f} ms "
            f"({result['tokens']} tokens, median of {args.rounds})"
        )
    return result


if __name__ == "__main__":
    main()
