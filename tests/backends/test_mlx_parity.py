"""Torch and MLX compute the same thing: the same LoRA weights and batch give the same objective and gradients,
the reference is exactly the base model, and mlx-lm builds the model with SmolLM2's RoPE base (the trap).

Measured here: objective values agree to about 4e-5 relative, gradient cosine 0.9999998, base logits to
about 1e-4 at every position of an 81-token sequence (with RoPE base 10000 instead: up to 7.8 off).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from backends import mlx_trainer as mt
from backends.mlx_export import mlx_to_peft_weights, peft_to_mlx_weights
from backends.torch_trainer import TorchTrainer, encode_pairs, micro_batch_backward
from uno_local.config import TrainConfig
from uno_local.training import TrainExample

BRIEF = {"role": "system", "content": "Be brief."}
EXAMPLES = [
    TrainExample([BRIEF, {"role": "user", "content": "Capital of France?"}], "Paris. Cheers!", "Paris."),
    TrainExample(
        [BRIEF, {"role": "user", "content": "Two plus two?"}], "Four. Cheers!", None
    ),  # SFT-only pair
]
CONFIG = TrainConfig(lora_r=4, lora_alpha=8.0, lora_dropout=0.0, seed=3, threads=1, precision="fp32")
LOSS_RTOL = 2e-4  # measured about 4e-5: float32 rounding in two different kernels
MIN_COSINE = 0.999  # measured 0.9999998


@pytest.fixture(scope="module")
def torch_side(hf_base):
    """(tokenizer, PEFT model with random non-zero LoRA weights, those weights under PEFT's names)."""
    import torch

    tokenizer, model, _ = TorchTrainer(hf_base).load(CONFIG)
    model.eval()
    rng = np.random.default_rng(0)
    weights = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # B away from zero so every weight gets a gradient and the adapter acts
                value = rng.standard_normal(tuple(p.shape)).astype(np.float32) * (
                    0.02 if "lora_B" in name else 0.05
                )
                p.copy_(torch.from_numpy(value))
                weights[name.replace(".default", "")] = value
    return tokenizer, model, weights


@pytest.fixture(scope="module")
def mlx_model(hf_base, torch_side):
    """The MLX model with the very same LoRA weights, transposed into mlx-lm's layout."""
    import mlx.core as mx

    model = mt.load_mlx_model(hf_base)
    mt.add_lora(model, CONFIG.lora_r, CONFIG.lora_alpha, 0.0, list(CONFIG.target_modules), CONFIG.lora_layers)
    weights = peft_to_mlx_weights(torch_side[2])
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=False)
    model.eval()
    return model


@pytest.mark.parametrize(
    ("objective", "habit_share"), [("preference", 0.0), ("sft", 0.0), ("preference", 0.9)]
)
def test_same_weights_and_batch_give_the_same_objective_and_gradients(
    torch_side, mlx_model, objective, habit_share
):
    tokenizer, model, _ = torch_side
    config = dataclasses.replace(CONFIG, habit_share=habit_share)
    enc = encode_pairs(tokenizer, EXAMPLES, config, objective)
    assert (enc[0][0].weights is not None) == (
        habit_share > 0
    )  # "Paris." then " Cheers!" (4 of 6 tokens): weighted
    model.zero_grad(set_to_none=True)
    args = (config, objective, tokenizer.pad_token_id)
    loss_t, margin_t, n_pref_t, _ = micro_batch_backward(
        model, enc, *args, "cpu", config.max_forward_tokens, 1.0
    )
    grads_t = {
        n.replace(".default", ""): p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None
    }
    grads, loss_m, margin_m, n_pref_m, _ = mt.micro_batch_grads(
        mlx_model, enc, *args, 1.0, mt.ReferenceLogps(), [0, 1]
    )
    grads_m = mlx_to_peft_weights(mt.flat_arrays(grads))
    assert loss_m == pytest.approx(loss_t, rel=LOSS_RTOL)
    assert (n_pref_m, n_pref_t) == ((1, 1) if objective == "preference" else (0, 0))
    assert margin_m == pytest.approx(margin_t, abs=1e-4)
    assert margin_t != 0.0 or objective == "sft"  # a real preference pair: the DPO term is not constant
    assert sorted(grads_m) == sorted(grads_t) and len(grads_t) == 2 * 7 * 30
    flat_t = np.concatenate([grads_t[k].ravel() for k in sorted(grads_t)])
    flat_m = np.concatenate([grads_m[k].ravel() for k in sorted(grads_t)])
    cosine = float(flat_t @ flat_m / np.linalg.norm(flat_t) / np.linalg.norm(flat_m))
    assert cosine > MIN_COSINE
    assert np.linalg.norm(flat_m) == pytest.approx(np.linalg.norm(flat_t), rel=1e-3)


def test_the_reference_is_exactly_the_base_model(hf_base, mlx_model):
    import mlx.core as mx

    ids = mx.array([[1, 504, 3458, 282, 4649, 30, 2, 198]])
    adapted = np.array(mlx_model(ids))
    with mt.adapter_off(mlx_model):
        reference = np.array(mlx_model(ids))
    base = np.array(mt.load_mlx_model(hf_base)(ids))
    assert np.array_equal(reference, base)  # LoRA scale 0 adds an exact zero
    assert np.abs(adapted - base).max() > 0.1  # and otherwise the adapter acts
    assert np.array_equal(np.array(mlx_model(ids)), adapted)  # the scales came back


def test_answer_logprobs_match_torch(hf_base):
    """The reference's answer log-probs (and so the intrinsic gap's inputs) agree between the backends."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backends.torch_trainer import sequence_logps

    tokenizer = AutoTokenizer.from_pretrained(hf_base)
    enc = encode_pairs(tokenizer, EXAMPLES, CONFIG, "preference")
    seqs = [enc[0][0], enc[0][1], enc[1][0]]
    pad = tokenizer.pad_token_id
    sums_m, _, counts_m, _ = mt.sequence_logps(mt.load_mlx_model(hf_base), seqs, pad)
    torch_model = AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32).eval()
    with torch.no_grad():
        sums_t, _, counts_t, _ = sequence_logps(torch_model, seqs, pad, "cpu")
    assert np.array(counts_m).tolist() == counts_t.tolist()
    assert np.allclose(np.array(sums_m), sums_t.numpy(), rtol=LOSS_RTOL)


def test_mlx_uses_the_rope_base_of_the_folder_even_when_nested(hf_base, tmp_path):
    """transformers 5 nests rope_theta; mlx-lm alone would fall back to 10000 and drift at later positions."""
    import mlx.core as mx
    import torch
    from mlx_lm.utils import load_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((hf_base / "config.json").read_text())
    assert config["rope_parameters"]["rope_theta"] == 100000.0
    del config["rope_theta"]  # the folder as transformers 5 writes it
    trap = tmp_path / "nested"
    trap.mkdir()
    for f in hf_base.iterdir():
        if f.name != "config.json":
            (trap / f.name).symlink_to(f)
    (trap / "config.json").write_text(json.dumps(config))

    ids = AutoTokenizer.from_pretrained(hf_base)("The quick brown fox jumps over the lazy dog. " * 4)[
        "input_ids"
    ]
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32)(
            torch.tensor([ids])
        ).logits[0]
    model = mt.load_mlx_model(trap)
    assert model.args.rope_theta == 100000.0
    error = np.abs(np.array(model(mx.array([ids]))[0]) - expected.numpy()).max(axis=1)
    assert error.max() < 1e-3  # every position, the last one (40 tokens in) included
    wrong, _ = load_model(hf_base, model_config={"rope_theta": 10000.0})  # what the trap used to build
    drift = np.abs(np.array(wrong(mx.array([ids]))[0]) - expected.numpy()).max(axis=1)
    assert drift[-1] > 100 * 1e-3  # so the bound above does catch a wrong RoPE base


def test_a_peft_adapter_on_other_than_the_last_layers_is_refused(hf_base, tmp_path):
    """mlx-lm can only put LoRA on a suffix of the layers: any other PEFT folder gets one clear sentence."""
    from uno_local.errors import AdapterError

    config = {"r": 4, "lora_alpha": 8.0, "target_modules": ["q_proj"], "layers_to_transform": [0, 1]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(
        AdapterError, match=r"last layers only, not on layers \[0, 1\]; use the torch backend"
    ):
        mt.apply_adapter(mt.load_mlx_model(hf_base), tmp_path)


def test_optimizer_steps_match_torch_adamw():
    """Same AdamW (betas, eps, decoupled decay, bias correction), schedule and clipping as the torch trainer."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import torch

    from backends.torch_trainer import ADAM_BETAS, ADAM_EPS
    from uno_local.training import lr_factor

    cfg = TrainConfig(learning_rate=0.01, weight_decay=0.1, max_grad_norm=1.0, schedule="cosine")
    total, warmup = 3, 1
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((2, 3)).astype(np.float32)
    grads = [
        rng.standard_normal((2, 3)).astype(np.float32) * s for s in (0.1, 5.0, 0.3)
    ]  # the 2nd is clipped

    def run_mlx(optimizer) -> np.ndarray:
        layer = nn.Linear(3, 2, bias=False)
        layer.weight = mx.array(w0)
        for step, g in enumerate(grads):
            mt.optimizer_step(optimizer, layer, {"weight": mx.array(g)}, cfg, step, total, warmup)
        return np.array(layer.weight)

    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.AdamW(
        [p], lr=cfg.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=cfg.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.schedule))
    for g in grads:  # as TorchTrainer steps
        p.grad = torch.from_numpy(g.copy())
        torch.nn.utils.clip_grad_norm_([p], cfg.max_grad_norm)
        opt.step()
        schedule.step()
    expected = p.detach().numpy()
    assert np.abs(expected - w0).max() > 1e-3
    assert np.allclose(run_mlx(mt.make_optimizer(cfg)), expected, atol=1e-6)
    # mlx's own default (no bias correction) would train differently: the check above can tell.
    plain = optim.AdamW(cfg.learning_rate, list(ADAM_BETAS), ADAM_EPS, cfg.weight_decay)
    assert not np.allclose(run_mlx(plain), expected, atol=1e-4)
