"""MLX <-> PEFT adapter conversion and MLX -> GGUF export on tiny hand-made adapters (no model, no mlx needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends.gguf_export import BaseMeta, peft_layers, read_base_meta
from backends.mlx_export import (
    export_mlx_to_gguf,
    mlx_config,
    mlx_layers,
    mlx_to_peft,
    mlx_to_peft_weights,
    peft_to_mlx_weights,
    write_mlx_files,
)
from uno_local.errors import AdapterError

R, SCALE = 3, 2.5  # PEFT alpha = 7.5
# Fake base (tests/backends/conftest.py): n_embd 8, 2 heads / 1 KV head of size 4, ffn 16, 2 layers.
LLAMA = BaseMeta("llama", n_layer=2, n_head=2, n_head_kv=1, n_embd=8)
SHAPES = {"self_attn.q_proj": (8, 8), "self_attn.k_proj": (8, 4), "mlp.down_proj": (16, 8)}  # (in, out)


def mlx_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """mlx-lm layout: lora_a (in, r), lora_b (r, out)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for layer in (0, 1):
        for path, (n_in, n_out) in SHAPES.items():
            weights[f"model.layers.{layer}.{path}.lora_a"] = rng.standard_normal((n_in, R)).astype(np.float32)
            weights[f"model.layers.{layer}.{path}.lora_b"] = rng.standard_normal((R, n_out)).astype(
                np.float32
            )
    return weights


def mlx_folder(path, weights=None, **config_overrides):
    config = {**mlx_config(R, SCALE, 0.0, sorted(SHAPES), 2), **config_overrides}
    write_mlx_files(mlx_weights() if weights is None else weights, config, path)
    return path


def test_peft_layout_is_the_transpose_under_peft_names():
    weights = mlx_weights()
    peft = mlx_to_peft_weights(weights)
    a = peft["base_model.model.model.layers.1.self_attn.k_proj.lora_A.weight"]
    b = peft["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]
    assert a.shape == (R, 8) and b.shape == (4, R)  # PEFT: A (r x in), B (out x r)
    mlx_a, mlx_b = (
        weights["model.layers.1.self_attn.k_proj.lora_a"],
        weights["model.layers.1.self_attn.k_proj.lora_b"],
    )
    assert np.array_equal(a, mlx_a.T) and np.array_equal(b, mlx_b.T)
    # The update is unchanged: mlx's scale x (x a b) equals PEFT's alpha / r x (x A^T B^T), alpha = scale x r.
    x = np.ones((1, 8), dtype=np.float32)
    mlx_update = SCALE * x @ mlx_a @ mlx_b
    alpha = SCALE * R
    assert np.allclose(mlx_update, alpha / R * x @ a.T @ b.T)
    back = peft_to_mlx_weights(peft)
    assert back.keys() == weights.keys() and all(np.array_equal(back[k], weights[k]) for k in weights)


def test_an_mlx_folder_and_its_peft_copy_give_the_same_gguf_input(tmp_path):
    folder = mlx_folder(tmp_path / "mlx")
    layers, alpha = mlx_layers(folder, LLAMA)
    assert alpha == SCALE * R and len(layers) == 6
    peft_dir = mlx_to_peft(folder, tmp_path / "peft", base="smollm2")
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["base_model_name_or_path"]) == (R, 7.5, "smollm2")
    assert config["target_modules"] == ["down_proj", "k_proj", "q_proj"]
    peft, peft_alpha = peft_layers(peft_dir, LLAMA)
    assert peft_alpha == alpha and peft.keys() == layers.keys()
    assert all(
        np.array_equal(peft[k][0], layers[k][0]) and np.array_equal(peft[k][1], layers[k][1]) for k in layers
    )
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_mlx_folder_exports_to_a_llama_cpp_adapter(fake_base, tmp_path):
    from gguf import GGUFReader

    base = fake_base("llama", n_head=2, n_head_kv=1)
    out = export_mlx_to_gguf(mlx_folder(tmp_path / "mlx"), base, tmp_path / "a.gguf")
    reader = GGUFReader(out)
    assert reader.fields["adapter.lora.alpha"].contents() == SCALE * R
    tensors = {t.name: t.data for t in reader.tensors}
    weights = mlx_weights()
    assert np.array_equal(
        tensors["blk.0.ffn_down.weight.lora_a"], weights["model.layers.0.mlp.down_proj.lora_a"].T
    )
    q_b = weights["model.layers.1.self_attn.q_proj.lora_b"].T
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_b"], q_b[[0, 2, 1, 3, 4, 6, 5, 7]])  # RoPE rows
    assert read_base_meta(base).n_head_kv == 1


def test_bad_mlx_folders_are_refused(tmp_path):
    with pytest.raises(AdapterError, match="is not an MLX adapter folder"):
        mlx_layers(tmp_path, LLAMA)
    with pytest.raises(AdapterError, match="only LoRA adapters convert, not dora"):
        mlx_layers(mlx_folder(tmp_path / "dora", fine_tune_type="dora"), LLAMA)
    with pytest.raises(AdapterError, match="has no lora_parameters.scale"):
        mlx_layers(mlx_folder(tmp_path / "alpha", lora_parameters={"rank": R, "alpha": 7.5}), LLAMA)
    odd = {**mlx_weights(), "model.layers.0.self_attn.rotary.lora_a": np.zeros((8, R), np.float32)}
    with pytest.raises(AdapterError, match="rotary.lora_a has no GGUF equivalent"):
        mlx_layers(mlx_folder(tmp_path / "odd", odd), LLAMA)
    half = {k: v for k, v in mlx_weights().items() if k != "model.layers.1.mlp.down_proj.lora_b"}
    with pytest.raises(AdapterError, match="layer 1 ffn_down has lora_a or lora_b missing"):
        mlx_layers(mlx_folder(tmp_path / "half", half), LLAMA)
    with pytest.raises(AdapterError, match="embed_tokens.weight is not a LoRA projection weight"):
        mlx_to_peft_weights({"model.embed_tokens.weight": np.zeros((4, 4), np.float32)})
