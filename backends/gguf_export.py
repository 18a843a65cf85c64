"""PEFT LoRA folder (or plain A/B arrays) -> llama.cpp GGUF LoRA adapter file, and a check of such a file.

Format (llama.cpp): `general.architecture` of the base, `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`; tensors `blk.{L}.{module}.weight.lora_a` (PEFT's A, r x in) and `.lora_b` (PEFT's B,
out x r), no transpose; llama.cpp scales by alpha / r like PEFT. HF names map to GGUF names through the
`gguf` package's own per-architecture tables (`TensorNameMap`), the ones llama.cpp's converters use; fused
projections (phi3's qkv_proj and gate_up_proj) are fused in HF too, so they map one to one. The trap: llama
GGUFs store the q and k projection rows permuted for RoPE, so B of q is permuted with n_head and B of k with
n_head_kv (A is untouched), the same permutation llama.cpp's HF converter applies to the base weights
(`LlamaModel.undo_permute`); qwen2/3, gemma2/3 and phi3 keep HF's layout.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uno_local.errors import AdapterError, ModelError

# GGUF architectures we train and export for ("llama" is also Llama 2/3.x, Mistral and SmolLM GGUFs).
SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3")
# Where llama.cpp's HF converter permutes the q/k rows of the base weights (its LlamaModel.undo_permute).
ROPE_PERMUTED_ARCHS = frozenset({"llama"})
# GGUF projections a LoRA may target (norms and embeddings are not trained).
LORA_TARGETS = frozenset(
    {"attn_q", "attn_k", "attn_v", "attn_qkv", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
)
_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])\.weight$")
_GGUF_KEY = re.compile(r"^blk\.(\d+)\.(\w+)\.weight\.lora_([ab])$")

Layers = dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]  # (layer, gguf module) -> (A r x in, B out x r)


@dataclass(frozen=True)
class BaseMeta:
    """What an adapter must agree with in its base GGUF (shared between callers: read only)."""

    arch: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_embd: int
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # "blk.L.attn_q" -> (out, in)
    head_dim: int = 0  # attention.key_length where the GGUF records it, else 0
    identity: str = ""  # base_identity(): what an adapter trained on this base is tied to


def read_base_meta(base_gguf: Path) -> BaseMeta:
    """Read architecture, head counts and projection shapes from a base model GGUF.

    Cached per file version (path, size, modification time): GGUFReader parses every metadata field,
    the whole vocabulary included (about 1 s for the embedded model, nearly all of an adapter export),
    and a retrain exports dozens of adapters against the same base.
    """
    path = Path(base_gguf)
    try:
        stat = path.stat()
    except OSError:
        return _parse_base_meta(path)  # raises the one-sentence ModelError
    return _cached_base_meta(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _cached_base_meta(path: str, size: int, mtime_ns: int) -> BaseMeta:
    return _parse_base_meta(Path(path))


def _parse_base_meta(base_gguf: Path) -> BaseMeta:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(base_gguf)
        arch = _field_str(reader, "general.architecture")
        n_layer = int(reader.fields[f"{arch}.block_count"].contents())
        n_head = int(reader.fields[f"{arch}.attention.head_count"].contents())
        kv_field = reader.fields.get(f"{arch}.attention.head_count_kv")
        n_head_kv = int(kv_field.contents()) if kv_field is not None else n_head
        n_embd = int(reader.fields[f"{arch}.embedding_length"].contents())
        key_length = reader.fields.get(f"{arch}.attention.key_length")
        head_dim = int(key_length.contents()) if key_length is not None else 0
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelError(
            f"{base_gguf} is not a readable GGUF model file ({exc}); choose another model."
        ) from exc
    shapes = {}
    for tensor in reader.tensors:
        stem = tensor.name.removesuffix(".weight")
        if tensor.name.endswith(".weight") and stem.split(".")[-1] in LORA_TARGETS:
            # GGUF dims are (in, out): innermost first.
            shapes[stem] = (int(tensor.shape[1]), int(tensor.shape[0]))
    return BaseMeta(arch, n_layer, n_head, n_head_kv, n_embd, shapes, head_dim, base_identity(reader))


def read_identity(gguf_path: Path) -> str:
    """`base_identity` of the GGUF at `gguf_path` (any GGUF model, trainable or not), cached per file version."""
    path = Path(gguf_path)
    stat = path.stat()
    return _cached_identity(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _cached_identity(path: str, size: int, mtime_ns: int) -> str:
    from gguf import GGUFReader

    try:
        return base_identity(GGUFReader(path))
    except Exception as exc:  # GGUFReader raises many kinds on garbage: all mean "unreadable"
        raise ModelError(f"{path} is not a readable GGUF model file ({exc}); choose another model.") from exc


def base_identity(reader) -> str:
    """sha256 (hex) of a GGUF's scalar metadata and its tensors' names, shapes and types: the same for
    a renamed or copied file, different for another model or another quantization of it."""
    import hashlib

    from gguf import GGUFValueType

    digest = hashlib.sha256()
    for key, field_ in sorted(reader.fields.items()):
        if field_.types and field_.types[0] != GGUFValueType.ARRAY and not key.startswith("GGUF."):
            digest.update(f"{key}={field_.contents()!r}\n".encode())
    for tensor in reader.tensors:
        digest.update(f"{tensor.name}:{list(tensor.shape)}:{tensor.tensor_type.name}\n".encode())
    return digest.hexdigest()


def _field_str(reader, key: str) -> str:
    value = reader.fields[key].contents()
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def require_supported(meta: BaseMeta, error: type[Exception] = AdapterError) -> None:
    """Raise `error` unless adapters can be exported for this base architecture."""
    if meta.arch not in SUPPORTED_ARCHS:
        raise error(
            f"The model architecture {meta.arch} is not supported yet for training adapters; "
            f"supported: {', '.join(SUPPORTED_ARCHS)}."
        )


@functools.lru_cache(maxsize=16)
def _name_map(arch: str, n_layer: int):
    import gguf

    by_name = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in by_name:
        raise AdapterError(f"The gguf package does not know the architecture {arch}.")
    return gguf.TensorNameMap(by_name[arch], n_layer)


def gguf_module(hf_module: str, arch: str, n_layer: int) -> tuple[int, str] | None:
    """(layer, GGUF projection) of an HF module path such as `model.layers.3.self_attn.q_proj`, read from
    the gguf package's table for `arch`; None where it is not a projection a LoRA may target."""
    name = _name_map(arch, n_layer).get_name(hf_module)
    parts = name.split(".") if name else []
    if len(parts) != 3 or parts[0] != "blk" or parts[2] not in LORA_TARGETS:
        return None
    return int(parts[1]), parts[2]


def permute_rope_rows(b: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of each head from HF's rotate-half layout to GGUF's interleaved pairs.

    Within a head of size d, HF row i (first half) and row i + d/2 (second half) form one RoPE pair;
    GGUF stores them adjacent, at rows 2i and 2i+1.
    """
    out_dim = b.shape[0]
    if out_dim % (2 * n_head):
        raise AdapterError(f"A q/k projection of {out_dim} rows cannot be split into {n_head} heads.")
    half = out_dim // n_head // 2
    return b.reshape(n_head, 2, half, *b.shape[1:]).swapaxes(1, 2).reshape(b.shape)


def peft_layers(peft_dir: Path, meta: BaseMeta) -> tuple[Layers, float]:
    """Read a PEFT LoRA folder trained on the base `meta` describes: (layer, GGUF module) -> (A, B) as
    float32 arrays, and the llama.cpp alpha."""
    from safetensors.numpy import load_file

    config_path, weights_path = peft_dir / "adapter_config.json", peft_dir / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterError(
            f"{peft_dir} is not a PEFT adapter folder (adapter_config.json or weights missing)."
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterError(f"{peft_dir}: DoRA and per-module ranks cannot be exported to GGUF yet.")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    if config.get("use_rslora"):
        alpha = alpha * math.sqrt(r)  # rsLoRA scales by alpha / sqrt(r); llama.cpp by alpha / r
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in load_file(weights_path).items():
        match = _PEFT_KEY.match(key)
        target = gguf_module(match.group(1), meta.arch, meta.n_layer) if match else None
        if target is None:
            raise AdapterError(
                f"{peft_dir}: the LoRA weight {key} has no GGUF equivalent; train only projections."
            )
        pairs.setdefault(target, {})[match.group(2)] = value.astype(np.float32)
    layers = {}
    for key, sides in pairs.items():
        if set(sides) != {"A", "B"}:
            raise AdapterError(f"{peft_dir}: layer {key[0]} {key[1]} has lora_A or lora_B missing.")
        layers[key] = (sides["A"], sides["B"])
    return layers, alpha


def write_lora_gguf(
    layers: Layers, alpha: float, base_meta: BaseMeta, out_path: Path, *, permute_qk: bool = True
) -> Path:
    """Write PEFT-oriented A (r x in) / B (out x r) pairs as a llama.cpp LoRA GGUF, atomically.

    The q/k rows are permuted for RoPE where the architecture's base GGUF is; `permute_qk=False` skips
    that: wrong on purpose, only for tests that prove the parity check catches it.
    """
    import gguf

    require_supported(base_meta)
    permute_qk = permute_qk and base_meta.arch in ROPE_PERMUTED_ARCHS
    if not layers:
        raise AdapterError("The adapter has no LoRA weights to export.")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, base_meta.arch)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        for (layer, module), (a, b) in sorted(layers.items()):
            _check_pair(layer, module, a.shape, b.shape, base_meta)
            if permute_qk and module == "attn_q":
                b = permute_rope_rows(b, base_meta.n_head)
            elif permute_qk and module == "attn_k":
                b = permute_rope_rows(b, base_meta.n_head_kv)
            name = f"blk.{layer}.{module}.weight"
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def export_peft_to_gguf(peft_dir: Path, base_gguf: Path, out_path: Path) -> Path:
    """Convert a PEFT LoRA folder trained on `base_gguf`'s weights into a GGUF adapter at `out_path`."""
    meta = read_base_meta(base_gguf)
    require_supported(meta)
    layers, alpha = peft_layers(peft_dir, meta)
    return write_lora_gguf(layers, alpha, meta, out_path)


def _check_pair(layer: int, module: str, a_shape: tuple, b_shape: tuple, meta: BaseMeta) -> None:
    """Raise AdapterError unless A (r x in) and B (out x r) fit the base projection."""
    expected = meta.shapes.get(f"blk.{layer}.{module}")
    if expected is None:
        raise AdapterError(f"The adapter targets blk.{layer}.{module}, which the base model does not have.")
    out_dim, in_dim = expected
    if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
        raise AdapterError(
            f"blk.{layer}.{module}: lora_a {a_shape} and lora_b {b_shape} disagree on the rank."
        )
    if a_shape[1] != in_dim or b_shape[0] != out_dim:
        raise AdapterError(
            f"blk.{layer}.{module}: adapter shapes {a_shape}/{b_shape} do not fit the base ({out_dim} x {in_dim})."
        )


def check_gguf_adapter(path: Path, base_meta: BaseMeta) -> None:
    """Raise AdapterError if `path` is not a complete, finite LoRA GGUF that fits `base_meta`."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        arch = _field_str(reader, "general.architecture")
        kind = _field_str(reader, "general.type")
        adapter_type = _field_str(reader, "adapter.type")
        float(reader.fields["adapter.lora.alpha"].contents())
        tensors = {t.name: t for t in reader.tensors}
        for tensor in tensors.values():  # a truncated file leaves short tensors or none
            if (
                tensor.data.size != tensor.n_elements
                or tensor.data_offset + tensor.n_bytes > path.stat().st_size
            ):
                raise ValueError(f"tensor {tensor.name} is cut short")
    except AdapterError:
        raise
    except Exception as exc:  # GGUFReader raises many kinds on garbage: all mean "unreadable"
        raise AdapterError(
            f"The adapter file {path} is corrupt or truncated ({exc}); retrain or delete it."
        ) from exc
    if kind != "adapter" or adapter_type != "lora":
        raise AdapterError(
            f"{path} is not a LoRA adapter (general.type {kind}, adapter.type {adapter_type})."
        )
    if arch != base_meta.arch:
        raise AdapterError(f"{path} is an adapter for {arch}, but the base model is {base_meta.arch}.")
    if not tensors:
        raise AdapterError(f"The adapter file {path} has no tensors; retrain or delete it.")
    for name, tensor in tensors.items():
        match = _GGUF_KEY.match(name)
        if match is None:
            raise AdapterError(f"{path} holds an unexpected tensor {name}.")
        layer, module, side = int(match.group(1)), match.group(2), match.group(3)
        other = tensors.get(name[:-1] + ("b" if side == "a" else "a"))
        if other is None:
            raise AdapterError(f"{path}: {name} has no matching lora_{'b' if side == 'a' else 'a'} tensor.")
        if side == "a":
            # reader.data is numpy-oriented: (r, in) for lora_a, (out, r) for lora_b
            _check_pair(layer, module, tuple(tensor.data.shape), tuple(other.data.shape), base_meta)
            if not (np.isfinite(tensor.data).all() and np.isfinite(other.data).all()):
                raise AdapterError(f"{path}: blk.{layer}.{module} holds NaN or infinite weights; retrain it.")
