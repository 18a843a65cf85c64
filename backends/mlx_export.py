"""MLX LoRA adapter (mlx-lm layout) <-> PEFT LoRA folder, and MLX adapter -> llama.cpp GGUF adapter.

mlx-lm keeps `model.layers.{L}.self_attn.q_proj.lora_a` as (in, r) and `lora_b` as (r, out) and scales the
update by a plain `scale`; PEFT keeps `lora_A.weight` as (r, in) and `lora_B.weight` as (out, r) and scales
by alpha / r. So both matrices are transposed and alpha = scale x r. The GGUF export then goes through
`backends.gguf_export.write_lora_gguf` (with its q/k RoPE permutation), the same path as torch adapters.
Pure numpy + json: no mlx import, so a folder trained on a Mac converts anywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from backends.gguf_export import (
    BaseMeta,
    Layers,
    gguf_module,
    read_base_meta,
    require_supported,
    write_lora_gguf,
)
from uno_local.errors import AdapterError

MLX_WEIGHTS = "adapters.safetensors"  # mlx-lm's file names, so `mlx_lm.load(adapter_path=...)` reads them
MLX_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
_MLX_KEY = re.compile(r"^model\.layers\.(\d+)\.((?:self_attn|mlp)\.(\w+))\.lora_([ab])$")
_PEFT_KEY = re.compile(
    r"^base_model\.model\.model\.layers\.(\d+)\.((?:self_attn|mlp)\.\w+)\.lora_([AB])\.weight$"
)


def mlx_to_peft_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """mlx-lm adapter tensors -> PEFT tensors: renamed, both matrices transposed."""
    out = {}
    for key, value in weights.items():
        match = _MLX_KEY.match(key)
        if match is None or value.ndim != 2:
            raise AdapterError(
                f"The MLX adapter tensor {key} is not a LoRA projection weight; it cannot be converted."
            )
        layer, path, side = match.group(1), match.group(2), match.group(4).upper()
        peft_key = f"base_model.model.model.layers.{layer}.{path}.lora_{side}.weight"
        out[peft_key] = np.ascontiguousarray(value.T, dtype=np.float32)
    return out


def peft_to_mlx_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PEFT tensors -> mlx-lm adapter tensors (the inverse of `mlx_to_peft_weights`)."""
    out = {}
    for key, value in weights.items():
        match = _PEFT_KEY.match(key)
        if match is None or value.ndim != 2:
            raise AdapterError(
                f"The PEFT adapter tensor {key} is not a LoRA projection weight; it cannot be converted."
            )
        layer, path, side = match.group(1), match.group(2), match.group(3).lower()
        out[f"model.layers.{layer}.{path}.lora_{side}"] = np.ascontiguousarray(value.T, dtype=np.float32)
    return out


def adapter_layers(peft_weights: dict[str, np.ndarray]) -> list[int]:
    """The decoder layers that PEFT tensors put LoRA weights on, in order."""
    return sorted({int(m.group(1)) for k in peft_weights if (m := _PEFT_KEY.match(k))})


def peft_config(
    r: int, alpha: float, dropout: float, targets: list[str], base: str, layers: list[int]
) -> dict:
    """The adapter_config.json PEFT writes for a plain LoRA on a causal LM (the keys PEFT and we read)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": sorted(targets),
        "layers_to_transform": sorted(layers),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
    }


def mlx_config(r: int, scale: float, dropout: float, keys: list[str], num_layers: int) -> dict:
    """mlx-lm's adapter_config.json: what `mlx_lm.tuner.utils.load_adapters` needs to rebuild the layers."""
    return {
        "fine_tune_type": "lora",
        "num_layers": num_layers,
        "lora_parameters": {"rank": r, "scale": scale, "dropout": dropout, "keys": sorted(keys)},
    }


def read_mlx_adapter(mlx_dir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors as float32 numpy, adapter_config.json) of an mlx-lm LoRA folder."""
    from safetensors.numpy import load_file

    config_path, weights_path = mlx_dir / MLX_CONFIG, mlx_dir / MLX_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterError(f"{mlx_dir} is not an MLX adapter folder ({MLX_CONFIG} or {MLX_WEIGHTS} missing).")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("fine_tune_type", "lora") != "lora":
        raise AdapterError(f"{mlx_dir}: only LoRA adapters convert, not {config['fine_tune_type']}.")
    if "scale" not in config.get("lora_parameters", {}):
        raise AdapterError(
            f"{mlx_dir}/{MLX_CONFIG} has no lora_parameters.scale; it is not an mlx-lm LoRA config."
        )
    try:
        weights = load_file(weights_path)
    except Exception as exc:  # safetensors raises several kinds for a bad or bfloat16 file
        raise AdapterError(f"{weights_path} could not be read ({exc}); save the adapter in float32.") from exc
    return {k: v.astype(np.float32) for k, v in weights.items()}, config


def mlx_layers(mlx_dir: Path, meta: BaseMeta) -> tuple[Layers, float]:
    """An mlx-lm LoRA folder trained on the base `meta` describes, as `write_lora_gguf` input:
    (layer, gguf module) -> (A r x in, B out x r), alpha."""
    weights, config = read_mlx_adapter(mlx_dir)
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in weights.items():
        match = _MLX_KEY.match(key)
        target = gguf_module(key.rsplit(".", 1)[0], meta.arch, meta.n_layer) if match else None
        if target is None:
            raise AdapterError(
                f"{mlx_dir}: the LoRA weight {key} has no GGUF equivalent; train only projections."
            )
        pairs.setdefault(target, {})[match.group(4)] = value.T
    layers = {}
    for (layer, module), sides in pairs.items():
        if set(sides) != {"a", "b"}:
            raise AdapterError(f"{mlx_dir}: layer {layer} {module} has lora_a or lora_b missing.")
        layers[(layer, module)] = (sides["a"], sides["b"])
    if not layers:
        raise AdapterError(f"{mlx_dir} holds no LoRA weights.")
    rank = next(iter(layers.values()))[0].shape[0]
    return layers, float(config["lora_parameters"]["scale"]) * rank


def write_peft_files(peft_weights: dict[str, np.ndarray], config: dict, folder: Path) -> None:
    """Write adapter_config.json + adapter_model.safetensors into `folder` (the caller makes it atomic)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(peft_weights, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    (folder / PEFT_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def write_mlx_files(weights: dict[str, np.ndarray], config: dict, folder: Path) -> None:
    """Write mlx-lm's adapters.safetensors + adapter_config.json into `folder` (`mlx_lm.load` reads them)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / MLX_WEIGHTS), metadata={"format": "mlx"})
    (folder / MLX_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def mlx_to_peft(mlx_dir: Path, out_dir: Path, base: str = "") -> Path:
    """Convert an mlx-lm LoRA folder into a PEFT folder that transformers + PEFT and our exporter read."""
    weights, config = read_mlx_adapter(mlx_dir)
    params = config["lora_parameters"]
    peft = mlx_to_peft_weights(weights)
    if not peft:
        raise AdapterError(f"{mlx_dir} holds no LoRA weights.")
    rank = next(v for k, v in peft.items() if k.endswith("lora_A.weight")).shape[0]
    targets = sorted({k.split(".")[-3] for k in peft})
    alpha = float(params["scale"]) * rank  # mlx scales by `scale`, PEFT by alpha / r
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_peft_files(
            peft,
            peft_config(rank, alpha, float(params.get("dropout", 0.0)), targets, base, adapter_layers(peft)),
            tmp,
        )
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_mlx_to_gguf(mlx_dir: Path, base_gguf: Path, out_path: Path) -> Path:
    """Convert an mlx-lm LoRA folder trained on `base_gguf`'s weights into a llama.cpp GGUF adapter."""
    meta = read_base_meta(base_gguf)
    require_supported(meta)
    layers, alpha = mlx_layers(mlx_dir, meta)
    return write_lora_gguf(layers, alpha, meta, out_path)
