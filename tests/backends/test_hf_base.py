"""ensure_hf_base: the embedded GGUF becomes a plain float32 HF folder that computes what llama.cpp computes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends.hf_base import MARKER, ensure_hf_base
from uno_local.errors import ModelError


def test_folder_has_config_tokenizer_and_float32_weights(hf_base):
    from safetensors import safe_open

    config = json.loads((hf_base / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["rope_theta"] == 100000.0  # top level, for mlx-lm
    assert "quantization_config" not in config
    assert (hf_base / MARKER).is_file()
    with safe_open(hf_base / "model.safetensors", "pt") as f:
        q = f.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert q.dtype.is_floating_point and q.element_size() == 4 and tuple(q.shape) == (576, 576)


def test_tokenizer_renders_the_gguf_chat_template(hf_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_base)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\n") and text.endswith(
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_derived_model_matches_llama_cpp_logits(hf_base, model_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backends.llama_runtime import prepare_llama_cpp

    llama_cpp = prepare_llama_cpp()

    tok = AutoTokenizer.from_pretrained(hf_base)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Name a fruit."}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32).eval()
    with torch.no_grad():
        torch_row = model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1].numpy()
    llm = llama_cpp.Llama(
        model_path=str(model_path), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False
    )
    try:
        llm.eval(ids)
        llama_row = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)
        ).copy()
    finally:
        llm.close()
    assert np.corrcoef(torch_row, llama_row)[0, 1] > 0.99
    assert torch_row.argmax() == llama_row.argmax()


def test_second_call_reuses_the_cache(hf_base, model_path):
    weights = hf_base / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert ensure_hf_base(model_path, hf_base.parent) == hf_base
    assert weights.stat().st_mtime_ns == before


def test_missing_or_garbage_gguf_is_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ensure_hf_base(tmp_path / "nope.gguf", tmp_path / "cache")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelError, match="not a readable GGUF"):
        ensure_hf_base(garbage, tmp_path / "cache")


def test_non_llama_architecture_is_refused(fake_base, tmp_path):
    with pytest.raises(ModelError, match="architecture gpt2 is not supported yet.*supported: llama"):
        ensure_hf_base(fake_base("gpt2"), tmp_path / "cache")


def test_failed_derivation_leaves_no_folder(fake_base, tmp_path):
    # Metadata says llama, but there is no tokenizer or usable weights: transformers fails half way.
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="could not be loaded"):
        ensure_hf_base(fake_base("llama"), cache)
    assert list(cache.iterdir()) == []


def test_lora_targets_name_the_fused_projections_where_a_model_fuses_them():
    from backends.hf_base import lora_targets

    llama = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    phi3 = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    every = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert lora_targets(every, llama) == every
    assert lora_targets(every, phi3) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert lora_targets(["v_proj", "down_proj"], phi3) == ["qkv_proj", "down_proj"]
