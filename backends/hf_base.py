"""Chat model GGUF -> cached Hugging Face folder (config.json, tokenizer, float32 model.safetensors).

The torch trainer, the parity check and MLX need the base as an HF folder. transformers can load a GGUF
(dequantizing it: the same weights llama.cpp computes with) but refuses to save a GGUF-loaded model, so we
build a fresh model from its config, load the state dict and save that. Derived once per GGUF (keyed by
its name, size and mtime) under the cache dir, written to a temp folder and renamed, so a crash leaves no
half folder behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from backends.gguf_export import BaseMeta, read_base_meta, require_supported
from backends.llama_runtime import DEFAULT_FALLBACK, FALLBACK_FORMATS, fallback_template
from uno_local.errors import ModelError

MARKER = "uno_base.json"  # provenance: which GGUF this folder came from
# What a derived folder holds; a folder derived by an older uno is derived again.
# 2: a GGUF without a chat template gets the runtime's fallback template (`fallback_template`).
DERIVATION = 2
# Projections some architectures fuse (phi3): there the fused module is trained in place of its parts.
FUSED = {
    "q_proj": "qkv_proj",
    "k_proj": "qkv_proj",
    "v_proj": "qkv_proj",
    "gate_proj": "gate_up_proj",
    "up_proj": "gate_up_proj",
}


def lora_targets(targets: list[str], module_names: set[str]) -> list[str]:
    """The configured projections as this model names them: a projection the model lacks becomes the
    fused one holding it, where the model has that (q_proj -> qkv_proj on phi3)."""
    out: list[str] = []
    for target in targets:
        name = target if target in module_names else FUSED.get(target, target)
        if name not in out:
            out.append(name)
    return out


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and notices: our callers report progress themselves."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def hf_base_dir(gguf_path: Path, cache_dir: Path) -> Path:
    """Where the HF folder of `gguf_path` lives (whether or not it exists yet)."""
    stat = gguf_path.stat()
    key = f"{gguf_path.name}|{stat.st_size}|{stat.st_mtime_ns}|{DERIVATION}"
    key = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"hf-base-{gguf_path.stem[:48]}-{key}"


def ensure_hf_base(gguf_path: Path, cache_dir: Path) -> Path:
    """Return the cached HF folder for `gguf_path`, deriving it first if needed (about 20 s on 2 cores)."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelError(f"Model file does not exist: {gguf_path}.")
    target = hf_base_dir(gguf_path, cache_dir)
    if (target / MARKER).is_file():
        return target
    meta = read_base_meta(gguf_path)
    require_supported(meta, error=ModelError)
    cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)  # a folder without its marker is not ours to trust
    tmp = cache_dir / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _derive(gguf_path, tmp, meta)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MARKER).is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _derive(gguf_path: Path, out: Path, meta: BaseMeta) -> None:
    """Load the GGUF through transformers and save it as a plain float32 HF folder in `out`.

    transformers' GGUF loader leaves the head size at the model class default (Qwen3: 128) whatever the
    file says, so it is passed from the GGUF's attention.key_length where the file records one. Gemma 2/3
    GGUFs do not record query_pre_attn_scalar: it is set to what llama.cpp computes with."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    folder, name = gguf_path.parent, gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        overrides = _config_overrides(meta)
        loaded = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32, **overrides
        )
    except Exception as exc:  # transformers raises many kinds for an unusable GGUF
        raise ModelError(
            f"{gguf_path} could not be loaded for training ({exc}); choose another model."
        ) from exc
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = AutoConfig.for_model(**config_dict)
    with torch.device("meta"):  # no second random init: the weights come from the loaded model
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
    out.mkdir(parents=True)
    fresh.save_pretrained(out)
    if not tokenizer.chat_template:  # train on the prompts the runtime renders for this GGUF
        tokenizer.chat_template = fallback_template(
            FALLBACK_FORMATS.get(meta.arch, DEFAULT_FALLBACK), _adds_bos(gguf_path)
        )
    tokenizer.save_pretrained(out)
    _hoist_rope_theta(out / "config.json")
    stat = gguf_path.stat()
    provenance = {"gguf": str(gguf_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    (out / MARKER).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


def _adds_bos(gguf_path: Path) -> bool:
    """Whether llama.cpp adds a BOS token when it tokenizes for this GGUF (`tokenizer.ggml.add_bos_token`;
    llama.cpp's default where the field is missing: add one)."""
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("tokenizer.ggml.add_bos_token")
    return True if field is None else bool(field.contents())


def _config_overrides(meta: BaseMeta) -> dict:
    """Config values transformers' GGUF loader would leave at the model class default."""
    overrides = {"head_dim": meta.head_dim} if meta.head_dim else {}
    if meta.arch in ("gemma2", "gemma3"):
        # llama.cpp scales attention by 1/sqrt(n_embd / n_head) for the 27B models, else by 1/sqrt(head_dim)
        is_27b = meta.n_layer == {"gemma2": 46, "gemma3": 62}[meta.arch]
        head_dim = meta.head_dim or meta.n_embd // meta.n_head
        overrides["query_pre_attn_scalar"] = meta.n_embd // meta.n_head if is_27b else head_dim
    return overrides


def _hoist_rope_theta(config_path: Path) -> None:
    """Copy rope_theta to the top level of config.json: mlx-lm reads only that and would fall back to 1e4.
    Gemma 3 keeps one RoPE setting per layer type; the full-attention one is the model's rope_theta."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters") or {}
    rope = rope.get("full_attention", rope)
    theta = rope.get("rope_theta", config.get("rope_theta"))
    if theta is None:
        raise ModelError(
            f"{config_path} has no RoPE base (rope_theta); the model cannot be used for training."
        )
    config["rope_theta"] = theta
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
