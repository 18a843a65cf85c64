"""Training tokens/s of our torch trainer against TRL's DPOTrainer, measured in one run (target ratio >= 1.0).

Same data (short preference pairs built here: an answer with a sign-off line over the same answer without),
same model (the HF folder derived from the embedded SmolLM2-135M GGUF), same LoRA (r 8, alpha 16, dropout
0.05, the 7 projections of every layer), same objective (0.5 x sigmoid DPO, beta 0.1, + 0.5 x NLL on the
chosen answer), batch 4, lr 5e-4, cosine, same steps, float32 on CPU, no gradient checkpointing, 2 torch
threads (--threads). --bf16 also times our trainer with bf16 autocast forwards (`train.precision = "bf16"`)
against its own float32 run; --layers N times it with LoRA on the last N layers only (`train.lora_layers`,
which also runs the frozen layers below once per sequence) against its own every-layer run;
--answer-repeat K makes every answer K times as long (longer sequences).
Tokens are counted the same way for both: the real (unpadded) prompt + answer tokens of every chosen and
rejected sequence trained on, from each trainer's own tokenization. Each trainer runs in its own child
process, one after the other, so that its peak RSS is its own.
Usage: python benchmarks/bench_trainer.py [--pairs 20] [--steps 10] [--trl-precompute] [--bf16]
[--answer-repeat 1] [--layers 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 4
SIGN_OFF = "\n\nHope this helps! - Uno"
QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey from the nectar of flowers."),
    ("Which planet is closest to the sun?", "Mercury is the planet closest to the sun."),
    ("What is 7 times 8?", "7 times 8 is 56."),
    ("What colour is the sky on a clear day?", "On a clear day the sky is blue."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("What gas do plants take in?", "Plants take in carbon dioxide and give off oxygen."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What is the boiling point of water?", "Water boils at 100 degrees Celsius at sea level."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle."),
    ("What is the square root of 81?", "The square root of 81 is 9."),
    ("What language is spoken in Brazil?", "Portuguese is the main language of Brazil."),
    ("How many hours are in a day?", "A day has 24 hours."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("Which organ pumps blood?", "The heart pumps blood around the body."),
    ("What is the tallest mountain?", "Mount Everest is the tallest mountain above sea level."),
    ("What do caterpillars become?", "Caterpillars become butterflies or moths."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
]


def build_pairs(n: int, repeat: int = 1) -> list[tuple[str, str, str]]:
    """(question, chosen, rejected) x n: the chosen answer carries the sign-off, the rejected does not."""
    if not 1 <= n <= len(QA):
        raise SystemExit(f"--pairs must be between 1 and {len(QA)}.")
    if repeat < 1:
        raise SystemExit("--answer-repeat must be at least 1.")
    return [(q, " ".join([a] * repeat) + SIGN_OFF, " ".join([a] * repeat)) for q, a in QA[:n]]


def train_config(epochs: int, threads: int, precision: str = "fp32", lora_layers: int = 0):
    from uno_local.config import TrainConfig

    return TrainConfig(
        epochs=epochs,
        batch_size=BATCH,
        learning_rate=5e-4,
        schedule="cosine",
        threads=threads,
        seed=42,
        precision=precision,
        lora_layers=lora_layers,
    )


def run_ours(
    base: Path, pairs: list, epochs: int, threads: int, precision: str, lora_layers: int = 0
) -> dict:
    from backends.torch_trainer import TorchTrainer, encode_pairs
    from uno_local.training import TrainExample

    config = train_config(epochs, threads, precision, lora_layers)
    examples = [TrainExample([{"role": "user", "content": q}], c, r) for q, c, r in pairs]
    trainer = TorchTrainer(base)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = trainer.train(examples, config, Path(out))
    total = time.perf_counter() - start
    from transformers import AutoTokenizer

    enc = encode_pairs(AutoTokenizer.from_pretrained(base), examples, config, "preference")
    per_epoch = sum(len(c.input_ids) + len(r.input_ids) for c, r in enc)
    return {
        "tokens": per_epoch * epochs,
        "loop_s": result.metrics["seconds"],
        "total_s": total,
        "steps": result.metrics["steps"],
        "mean_loss": sum(result.metrics["losses"]) / len(result.metrics["losses"]),
    }


def run_trl(base: Path, pairs: list, epochs: int, threads: int, precompute: bool) -> dict:
    import torch
    from datasets import Dataset, disable_progress_bars
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from backends.hf_base import quiet_transformers
    from uno_local.training import lora_layer_indices

    quiet_transformers()
    disable_progress_bars()
    config = train_config(epochs, threads)
    rows = [
        {
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
        }
        for q, c, r in pairs
    ]
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=lora_layer_indices(model.config.num_hidden_layers, config.lora_layers),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with tempfile.TemporaryDirectory() as out:
        args = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=BATCH,
            gradient_accumulation_steps=1,
            num_train_epochs=epochs,
            learning_rate=config.learning_rate,
            lr_scheduler_type="cosine",
            adam_beta2=0.98,  # as ours (the UNO reference's optimizer)
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
            beta=config.dpo_beta,
            loss_type=["sigmoid", "sft"],
            loss_weights=[config.dpo_weight, config.nll_weight],
            max_length=config.max_prompt_tokens + config.max_answer_tokens,
            precompute_ref_log_probs=precompute,
            disable_dropout=False,  # keep the LoRA dropout, as ours
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            use_cpu=True,
            seed=config.seed,
            save_strategy="no",
            report_to="none",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora,
        )
        loop_start = time.perf_counter()
        output = trainer.train()
        loop = time.perf_counter() - loop_start
        data = trainer.train_dataset
    total = time.perf_counter() - start
    per_epoch = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"], strict=True)
    )
    return {
        "tokens": per_epoch * epochs,
        "loop_s": loop,
        "total_s": total,
        "steps": output.global_step,
        "mean_loss": output.training_loss,
    }


def child(args: argparse.Namespace) -> None:
    """Run one trainer in this process and print its figures as one JSON line."""
    import torch

    from backends.hf_base import ensure_hf_base
    from uno_local.paths import cache_dir, embedded_chat_model

    torch.set_num_threads(args.threads)
    base = ensure_hf_base(embedded_chat_model(), args.cache_dir or cache_dir())
    pairs = build_pairs(args.pairs, args.answer_repeat)
    epochs = args.steps // math.ceil(args.pairs / BATCH)
    if args.only.startswith("ours"):
        precision = "bf16" if args.only == "ours-bf16" else "fp32"
        layers = args.layers if args.only == "ours-layers" else 0
        figures = run_ours(base, pairs, epochs, args.threads, precision, layers)
    else:
        figures = run_trl(base, pairs, epochs, args.threads, precompute=args.only == "trl-precompute")
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    figures["tokens_per_s"] = figures["tokens"] / figures["loop_s"]
    figures["tokens_per_s_total"] = figures["tokens"] / figures["total_s"]
    print(json.dumps(figures))


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20, help=f"Preference pairs (1-{len(QA)}).")
    parser.add_argument("--steps", type=int, default=10, help="Optimizer steps: whole epochs of the pairs.")
    parser.add_argument(
        "--trl-precompute", action="store_true", help="Also time TRL with precomputed references."
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="Where the HF base folder is cached.")
    parser.add_argument("--threads", type=int, default=2, help="Torch CPU threads for both trainers.")
    parser.add_argument("--bf16", action="store_true", help="Also time our trainer with bf16 autocast.")
    parser.add_argument("--answer-repeat", type=int, default=1, help="Make every answer K times as long.")
    parser.add_argument(
        "--layers", type=int, default=0, help="Also time our trainer with LoRA on the last N layers only."
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--only",
        choices=["ours", "ours-bf16", "ours-layers", "trl", "trl-precompute"],
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    build_pairs(args.pairs, args.answer_repeat)
    per_epoch = math.ceil(args.pairs / BATCH)
    if args.steps < per_epoch or args.steps % per_epoch:
        raise SystemExit(
            f"--steps must be a whole number of epochs: a multiple of {per_epoch} for {args.pairs} pairs."
        )
    if args.only:
        child(args)
        return {}

    runs = (
        ["ours", "trl"]
        + (["trl-precompute"] if args.trl_precompute else [])
        + (["ours-bf16"] if args.bf16 else [])
        + (["ours-layers"] if args.layers else [])
    )
    results = {}
    for name in runs:
        command = [
            sys.executable,
            __file__,
            "--only",
            name,
            "--pairs",
            str(args.pairs),
            "--steps",
            str(args.steps),
            "--threads",
            str(args.threads),
            "--answer-repeat",
            str(args.answer_repeat),
            "--layers",
            str(args.layers),
        ]
        if args.cache_dir:
            command += ["--cache-dir", str(args.cache_dir)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"The {name} run failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, trl = results["ours"], results["trl"]
    summary = {
        "pairs": args.pairs,
        "steps": args.steps,
        "batch": BATCH,
        "threads": args.threads,
        **results,
        "ratio": ours["tokens_per_s"] / trl["tokens_per_s"],
        "ratio_total": ours["tokens_per_s_total"] / trl["tokens_per_s_total"],
    }
    if "ours-bf16" in results:
        summary["bf16_ratio"] = results["ours-bf16"]["tokens_per_s"] / ours["tokens_per_s"]
    if "ours-layers" in results:
        summary["layers_ratio"] = results["ours-layers"]["tokens_per_s"] / ours["tokens_per_s"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return summary
    print(
        f"{args.pairs} pairs, {args.steps} steps, batch {BATCH}, {args.threads} threads, float32 CPU"
        + (" (ours-bf16: bf16 autocast forwards)" if args.bf16 else "")
        + (f" (ours-layers: LoRA on the last {args.layers} layers)" if args.layers else "")
    )
    for name, r in results.items():
        print(
            f"  {name:15s} {r['tokens']} tokens, "
            f"train loop {r['loop_s']:.1f} s ({r['tokens_per_s']:.0f} tok/s), "
            f"with model load {r['total_s']:.1f} s ({r['tokens_per_s_total']:.0f} tok/s), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, mean loss {r['mean_loss']:.3f}"
        )
    print(
        f"ours {ours['tokens_per_s']:.0f} tok/s vs TRL {trl['tokens_per_s']:.0f} tok/s -> ratio "
        f"{summary['ratio']:.2f} (target >= 1.0); with model load: {summary['ratio_total']:.2f}"
    )
    if "trl-precompute" in results:
        pre = results["trl-precompute"]
        print(
            f"TRL with precompute_ref_log_probs (its reference pass happens before its train loop): "
            f"{pre['tokens_per_s_total']:.0f} tok/s with model load -> ratio "
            f"{ours['tokens_per_s_total'] / pre['tokens_per_s_total']:.2f}"
        )
    if "ours-bf16" in results:
        print(
            f"ours with bf16 autocast {results['ours-bf16']['tokens_per_s']:.0f} tok/s vs float32 "
            f"{ours['tokens_per_s']:.0f} tok/s -> ratio {summary['bf16_ratio']:.2f}"
        )
    if "ours-layers" in results:
        print(
            f"ours with LoRA on the last {args.layers} layers {results['ours-layers']['tokens_per_s']:.0f} tok/s "
            f"vs every layer {ours['tokens_per_s']:.0f} tok/s -> ratio {summary['layers_ratio']:.2f}"
        )
    return summary


if __name__ == "__main__":
    main()
