"""How close a training step comes to this machine's matrix-multiply peak, and what that makes the floor
of a retrain's training time.

Measured in one run: the peak GFLOP/s of a square float32 and bf16 `torch.mm` (the best this CPU does
with the threads given), the FLOPs of one real optimizer micro-batch of our trainer (torch's FLOP
counter: 4 preference pairs on the embedded model, reference log-probs cached as in epochs 2+), and
that micro-batch's wall time in fp32 and in bf16 (`train.precision`). Prints each precision's share of
its own peak, and, for `--tokens` trained tokens (what `uno retrain --json` reports as trained_tokens),
the seconds that training would take at 100% of the peak: no change to the trainer can beat that.
Usage: python benchmarks/bench_train_floor.py [--tokens 307546] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORDS = ["the", "garden", "needs", "water", "and", "light", "every", "day", "so", "plants", "grow", "strong"]


def peak_gflops(dtype, n: int = 1024, reps: int = 20) -> float:
    """Best-of-3 GFLOP/s of an n x n matrix product."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * reps / best / 1e9


def text(n_words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


def step_figures(base_dir: Path, precision: str, rounds: int) -> dict:
    """FLOPs and best wall time of one micro-batch (4 pairs, reference cached) at `precision`."""
    from torch.utils.flop_counter import FlopCounterMode

    from backends.torch_trainer import ReferenceLogps, TorchTrainer, encode_pairs, micro_batch_backward
    from uno_local.config import TrainConfig
    from uno_local.training import TrainExample

    config = TrainConfig(precision=precision)
    tokenizer, model, device = TorchTrainer(base_dir).load(config)
    prompt = [{"role": "user", "content": "How often should I water tomato plants in summer?"}]
    examples = [TrainExample(prompt, text(120) + " Happy growing!", text(150), [i]) for i in range(4)]
    pairs = encode_pairs(tokenizer, examples, config, "preference")
    keys = list(range(len(pairs)))
    reference = ReferenceLogps()

    def step() -> int:
        out = micro_batch_backward(
            model, pairs, config, "preference", 0, device, config.max_forward_tokens, 1.0, reference, keys
        )
        model.zero_grad(set_to_none=True)
        return out[3]

    model.train()
    step()  # fills the reference cache and warms up
    with FlopCounterMode(display=False) as counter:
        tokens = step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"flops": counter.get_total_flops(), "tokens": tokens, "seconds": min(times)}


def main() -> None:
    import torch

    from backends.hf_base import ensure_hf_base
    from uno_local.paths import cache_dir, embedded_chat_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=0, help="trained tokens of a retrain, for its floor")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base_dir = ensure_hf_base(embedded_chat_model(), cache_dir())
    result = {"threads": args.threads}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = peak_gflops(dtype)
        step = step_figures(base_dir, precision, args.rounds)
        achieved = step["flops"] / step["seconds"] / 1e9
        per_token = step["flops"] / step["tokens"]
        result[precision] = {
            "peak_gflops": round(peak),
            "step_gflop": round(step["flops"] / 1e9),
            "step_tokens": step["tokens"],
            "step_s": round(step["seconds"], 2),
            "achieved_gflops": round(achieved),
            "share_of_peak": round(achieved / peak, 2),
            "floor_s": round(args.tokens * per_token / (peak * 1e9)) if args.tokens else None,
            "at_this_speed_s": round(args.tokens * per_token / (achieved * 1e9)) if args.tokens else None,
        }
    if args.json:
        print(json.dumps(result))
        return
    for precision in ("fp32", "bf16"):
        r = result[precision]
        line = (
            f"{precision}: peak {r['peak_gflops']} GFLOP/s; a step of {r['step_tokens']} tokens is "
            f"{r['step_gflop']} GFLOP in {r['step_s']} s = {r['achieved_gflops']} GFLOP/s, "
            f"{r['share_of_peak']:.2f} of the peak"
        )
        if args.tokens:
            line += (
                f"; {args.tokens} trained tokens: {r['at_this_speed_s']} s at this speed, "
                f"at least {r['floor_s']} s at the peak"
            )
        print(line)


if __name__ == "__main__":
    main()
