"""Where a training step's time goes with the size of its forwards (`train.max_forward_tokens`).

A micro-batch is cut into forwards of at most `max_forward_tokens` padded tokens (a pair is never
split). This times the same micro-batches, in one run and one process per size, at the default 256 and
at larger sizes: 4 preference pairs shaped like the UNO-loop eval's (answers of 60-85 words, the chosen
one with a sign-off; about 120 tokens a sequence, so 256 holds one pair) and 4 SFT examples of mixed
length (practice's), the reference log-probs cached as in epochs 2+. Prints each size's best and
median step time, its ratio to 256's, and the process's peak RSS.
Usage: python benchmarks/bench_forward_size.py [--sizes 256,512,1024] [--rounds 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_train_floor import text  # noqa: E402  (the same filler answers)

PREFERENCE_WORDS = [70, 85, 60, 80]
SFT_WORDS = [20, 80, 40, 75]


def measure(size: int, rounds: int, threads: int) -> list[dict]:
    """Best and median step time of each micro-batch at one forward size (run in a child process)."""
    import resource

    import torch

    from backends.hf_base import ensure_hf_base
    from backends.torch_trainer import ReferenceLogps, TorchTrainer, encode_pairs, micro_batch_backward
    from uno_local.config import TrainConfig
    from uno_local.paths import cache_dir, embedded_chat_model
    from uno_local.training import TrainExample

    torch.set_num_threads(threads)
    base = ensure_hf_base(embedded_chat_model(), cache_dir())
    config = TrainConfig(max_forward_tokens=size)
    tokenizer, model, device = TorchTrainer(base).load(config)
    model.train()
    prompt = [{"role": "user", "content": "How often should I water tomato plants in summer?"}]
    batches = {
        "preference": [
            TrainExample(prompt, text(n) + " Happy growing!", text(n), [i])
            for i, n in enumerate(PREFERENCE_WORDS)
        ],
        "sft": [TrainExample(prompt, text(n), None, [i]) for i, n in enumerate(SFT_WORDS)],
    }
    out = []
    for name, examples in batches.items():
        pairs = encode_pairs(tokenizer, examples, config, "preference")
        reference, keys = ReferenceLogps(), list(range(len(pairs)))

        def step(pairs=pairs, reference=reference, keys=keys) -> int:
            result = micro_batch_backward(
                model, pairs, config, "preference", 0, device, size, 1.0, reference, keys
            )
            model.zero_grad(set_to_none=True)
            return result[3]

        step()  # fills the reference cache and warms up
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            tokens = step()
            times.append(time.perf_counter() - start)
        out.append(
            {
                "size": size,
                "batch": name,
                "tokens": tokens,
                "best_s": min(times),
                "median_s": sorted(times)[len(times) // 2],
                "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.rounds, args.threads)))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        command = [sys.executable, __file__, "--child", str(size), "--rounds", str(args.rounds)]
        command += ["--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    baseline = {r["batch"]: r["best_s"] for r in rows if r["size"] == 256}
    print("| max_forward_tokens | micro-batch | tokens | best s | median s | vs 256 (best) | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['best_s'] / baseline[r['batch']]:.2f}x" if r["batch"] in baseline else "-"
        print(
            f"| {r['size']} | {r['batch']} | {r['tokens']} | {r['best_s']:.2f} | {r['median_s']:.2f} | "
            f"{ratio} | {r['peak_rss_gib']:.2f} |"
        )


if __name__ == "__main__":
    main()
