"""What the deploy gate's parity check sees for random LoRAs on one projection at a time.

For each module and scale: a random rank-4 PEFT LoRA (A and B ~ N(0, scale)) on that projection of every
layer, exported with our exporter and compared by `ParityChecker` on the deploy gate's prompts. Prints
the adapter's effect in torch, the export error, the base difference (llama.cpp runs the base's float32
copy, `backends.parity.float32_base`), the least-squares ratio of llama.cpp's effect to torch's and the
gate's verdict. `--kept HOME` checks a kept eval home's trained checkpoints instead (`uno eval --keep`:
every `work/expert-*/epoch-N`), each exported right and without the q/k permutation, and sums up the
error as a share of the gate's allowed error per kind (docs/eval.md, session 24).
Usage: python benchmarks/probe_parity.py --model GGUF [--modules q_proj,v_proj] [--scales 0.001,0.02,0.1]
[--cache DIR] [--kept HOME]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uno_local.retrain.deploy import PARITY_PROMPTS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="The GGUF the adapters are trained for.")
    parser.add_argument("--modules", default="q_proj,k_proj,v_proj,down_proj")
    parser.add_argument("--scales", default="0.001,0.02,0.1")
    parser.add_argument(
        "--cache", type=Path, help="Where the derived HF folder is kept (default: a temp dir)."
    )
    parser.add_argument("--kept", type=Path, help="A kept eval home: check its trained checkpoints.")
    args = parser.parse_args()
    if args.kept:
        check_kept(args.model, args.kept, args.cache or args.kept / "cache")
        return

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from backends.gguf_export import export_peft_to_gguf
    from backends.hf_base import ensure_hf_base, quiet_transformers
    from backends.parity import ParityChecker

    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        hf = ensure_hf_base(args.model, args.cache or Path(tmp) / "cache")
        with ParityChecker(args.model, hf, PARITY_PROMPTS) as checker:
            for module in args.modules.split(","):
                for scale in (float(s) for s in args.scales.split(",")):
                    base = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32)
                    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=[module]))
                    gen = torch.Generator().manual_seed(0)
                    for name, param in model.named_parameters():
                        if "lora_" in name:
                            param.data = torch.randn(param.shape, generator=gen) * scale
                    folder = Path(tmp) / f"{module}-{scale}"
                    shutil.rmtree(folder, ignore_errors=True)
                    model.save_pretrained(folder)
                    gguf = export_peft_to_gguf(folder, args.model, folder / "adapter.gguf")
                    report = checker.check(folder, gguf)
                    delta_l = checker.llama_adapted(gguf) - checker.base_llama
                    delta_t = checker.torch_adapted(folder) - checker.base_torch
                    ratio = float((delta_l * delta_t).sum() / max((delta_t * delta_t).sum(), 1e-12))
                    print(
                        f"{module} s={scale}: torch effect {np.sqrt(np.mean(delta_t**2)):.3f}, "
                        f"error {report.err_rms:.3f}, base difference {report.floor_rms:.3f}, "
                        f"llama.cpp/torch {ratio:.3f}, {report.error_ratio:.2f}x the allowed error -> "
                        f"{'passes' if report.passes() else 'refused'}",
                        flush=True,
                    )


def check_kept(model: Path, home: Path, cache: Path) -> None:
    """Every kept Expert checkpoint, exported right and without the q/k permutation, through the gate."""
    from backends.gguf_export import export_peft_to_gguf, peft_layers, read_base_meta, write_lora_gguf
    from backends.hf_base import ensure_hf_base, quiet_transformers
    from backends.parity import ParityChecker

    quiet_transformers()
    meta = read_base_meta(model)
    ratios: dict[str, list[float]] = {"right": [], "wrong": []}
    epoch = lambda p: (p.parent.name, int(p.name.split("-")[1]))  # noqa: E731
    with (
        tempfile.TemporaryDirectory() as tmp,
        ParityChecker(model, ensure_hf_base(model, cache), PARITY_PROMPTS) as checker,
    ):
        for ckpt in sorted(home.glob("work/expert-*/epoch-*"), key=epoch):
            out = Path(tmp) / f"{ckpt.parent.name}-{ckpt.name}"
            out.mkdir()
            layers, alpha = peft_layers(ckpt, meta)
            exports = {
                "right": export_peft_to_gguf(ckpt, model, out / "right.gguf"),
                "wrong": write_lora_gguf(layers, alpha, meta, out / "wrong.gguf", permute_qk=False),
            }
            for kind, gguf in exports.items():
                r = checker.check(ckpt, gguf)
                ratios[kind].append(r.error_ratio)
                print(
                    f"{ckpt.parent.name[:14]} {ckpt.name} {kind}: error {r.err_rms:.4f}, base difference "
                    f"{r.floor_rms:.4f}, effect {r.effect_rms:.2f}, {r.error_ratio:.2f}x the allowed error, "
                    f"top-1 {r.top1_agreement:.2f} -> {'passes' if r.passes() else 'refused'}",
                    flush=True,
                )
    for kind, values in ratios.items():
        if values:
            print(f"{kind} exports: {len(values)}, {min(values):.2f}-{max(values):.2f}x the allowed error")


if __name__ == "__main__":
    main()
