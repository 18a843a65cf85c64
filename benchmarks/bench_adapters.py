"""Adapter serving cost, measured in one run on the embedded model (or `--model PATH`, any GGUF we learn on):

(2) generation tokens/s with an adapter selected against none (target >= 0.85);
(3) adapter switch time between requests, including the KV-cache reset (target < 50 ms): the select
    call plus the extra time of the first answer after a switch over one on an unchanged adapter
    (both start from an empty KV cache, as a new request does).
The adapters have the shape `uno retrain` trains by default (`[train]` lora_r, target_modules and
lora_layers: rank 8 on the 7 projections of every layer) with random weights: speed does not depend
on what an adapter learned. `--modules`, `--rank` and `--layers` (0 = every layer) change that shape.
The ratio is the median over rounds of (adapter tokens/s / base tokens/s), each round timing the two
back to back, so that a drift in the machine's speed between rounds cancels out.
Usage: python benchmarks/bench_adapters.py [--model PATH] [--rounds 7] [--modules q_proj,k_proj,v_proj,o_proj] [--rank 8]
[--layers 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.gguf_export import gguf_module, read_base_meta, write_lora_gguf  # noqa: E402
from uno_local.config import TrainConfig  # noqa: E402
from uno_local.training import lora_layer_indices  # noqa: E402

# HF projection -> its parent module (llama-style names; the gguf package maps them per architecture)
PROJECTIONS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn"}
PROJECTIONS |= {"gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
PROMPT = [{"role": "user", "content": "Write a detailed guide to planting a vegetable garden, step by step."}]


def random_adapter(
    base_gguf: Path, out: Path, seed: int, modules: set[str], rank: int = 8, n_layers: int = 0
) -> Path:
    """A random LoRA GGUF on `modules` of the last `n_layers` layers (0: every layer)."""
    meta = read_base_meta(base_gguf)
    wanted = {gguf_module(f"model.layers.0.{PROJECTIONS[m]}.{m}", meta.arch, 1)[1] for m in modules}
    adapted = set(lora_layer_indices(meta.n_layer, n_layers))
    rng = np.random.default_rng(seed)
    layers = {}
    for stem, (out_dim, in_dim) in meta.shapes.items():
        _, layer, module = stem.split(".")
        if module not in wanted or int(layer) not in adapted:
            continue
        layers[(int(layer), module)] = (
            rng.normal(0, 0.02, (rank, in_dim)).astype(np.float32),
            rng.normal(0, 0.02, (out_dim, rank)).astype(np.float32),
        )
    return write_lora_gguf(layers, 2.0 * rank, meta, out)


def tokens_per_s(runtime, settings, adapter) -> float:
    runtime.llm.reset()
    stats = None
    for event in runtime.stream(PROMPT, settings, adapter=adapter):
        stats = event.stats or stats
    return stats.tokens_per_s


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TrainConfig()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument(
        "--modules", default=",".join(defaults.target_modules), help="LoRA projections, comma-separated."
    )
    parser.add_argument("--rank", type=int, default=defaults.lora_r, help="LoRA rank of the random adapters.")
    parser.add_argument(
        "--layers", type=int, default=defaults.lora_layers, help="LoRA on the last N layers; 0 = every layer."
    )
    parser.add_argument("--model", type=Path, help="A GGUF chat model (default: the embedded SmolLM2-135M).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modules = {m.strip() for m in args.modules.split(",")}
    if not modules <= PROJECTIONS.keys():
        parser.error(f"--modules takes some of {', '.join(PROJECTIONS)}")

    from backends.llama_runtime import LlamaRuntime
    from uno_local.paths import embedded_chat_model
    from uno_local.runtime import GenerationSettings

    model = args.model or embedded_chat_model()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = LlamaRuntime(model, n_ctx=2048, n_threads=2)
        load_ms = []
        for name in ("a", "b"):
            path = random_adapter(
                model, Path(tmp) / f"{name}.gguf", ord(name), modules, args.rank, args.layers
            )
            start = time.perf_counter()
            runtime.load_adapter(name, path)
            load_ms.append((time.perf_counter() - start) * 1000)
        settings = GenerationSettings.greedy(args.max_tokens)
        tokens_per_s(runtime, settings, None)  # warm-up
        base, adapted = [], []
        for _ in range(args.rounds):  # alternate so noise hits both
            base.append(tokens_per_s(runtime, settings, None))
            adapted.append(tokens_per_s(runtime, settings, "a"))
        # Switch cost: select the other adapter (with the cache reset) and decode one token.
        short = GenerationSettings.greedy(1)
        switch_ms, same_ms = [], []
        for i in range(args.rounds * 4):
            target = "b" if i % 2 == 0 else "a"
            start = time.perf_counter()
            runtime._select(target)
            switch_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            for _ in runtime.stream(PROMPT, short, adapter=target):
                pass
            same_ms.append((time.perf_counter() - start) * 1000)
        first_token_after_switch = statistics.median(same_ms)
        cold = []
        for _ in range(args.rounds * 2):  # same adapter, cache reset too: the switch's extra cost is the rest
            runtime.llm.reset()
            start = time.perf_counter()
            for _ in runtime.stream(PROMPT, short, adapter="a"):
                pass
            cold.append((time.perf_counter() - start) * 1000)
        runtime.close()
    result = {
        "benchmark": "adapters",
        "model": model.name,
        "modules": sorted(modules),
        "rank": args.rank,
        "layers": len(lora_layer_indices(read_base_meta(model).n_layer, args.layers)),
        "base_tokens_per_s": statistics.median(base),
        "adapter_tokens_per_s": statistics.median(adapted),
        "ratio": statistics.median(a / b for a, b in zip(adapted, base, strict=True)),
        "adapter_load_ms": statistics.median(load_ms),
        "switch_select_ms": statistics.median(switch_ms),
        "first_token_after_switch_ms": first_token_after_switch,
        "first_token_same_adapter_ms": statistics.median(cold),
    }
    result["switch_cost_ms"] = result["switch_select_ms"] + max(
        0.0, result["first_token_after_switch_ms"] - result["first_token_same_adapter_ms"]
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"adapter generation: {result['adapter_tokens_per_s']:.1f} tok/s with a rank-{args.rank} adapter on "
            f"{len(modules)} projections of {result['layers']} layers vs "
            f"{result['base_tokens_per_s']:.1f} without (medians) -> ratio {result['ratio']:.3f} "
            f"(median of {args.rounds} paired rounds; target >= 0.85)\n"
            f"adapter switch: select + cache reset {result['switch_select_ms']:.2f} ms; first token after a "
            f"switch {result['first_token_after_switch_ms']:.1f} ms vs {result['first_token_same_adapter_ms']:.1f} ms "
            f"for the same adapter after a cache reset -> switch cost {result['switch_cost_ms']:.1f} ms (target < 50 ms); "
            f"adapter load {result['adapter_load_ms']:.1f} ms"
        )
    return result


if __name__ == "__main__":
    main()
