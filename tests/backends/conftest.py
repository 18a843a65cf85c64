"""Fixtures for the trainer/export tests: the HF base folder derived once per session and its tokenizer,
tiny fake GGUFs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gguf_files import gguf_file


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The test machines have 2 cores shared by other jobs; with 2 threads each, torch and llama.cpp
    spin at every barrier and ran 4-5x slower than on one thread (measured). For each module here only:
    the end-to-end tests after them train with the app's own default, as a user's retrain does (left at
    1, it changed their adapters: bf16 sums split differently). Module scope, not package: this folder
    has no __init__.py, so pytest would scope a "package" fixture to the whole session."""
    from backends.torch_threads import cpu_threads

    with cpu_threads(1):
        yield


@pytest.fixture(scope="session")
def hf_base(tmp_path_factory, model_path) -> Path:
    """The embedded model's HF folder (about 20 s once per session)."""
    from backends.hf_base import ensure_hf_base

    return ensure_hf_base(model_path, tmp_path_factory.mktemp("hf-cache"))


@pytest.fixture(scope="session")
def tokenizer(hf_base):
    """The embedded model's tokenizer, from its HF folder."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_base)


def write_fake_base(
    path: Path, arch: str = "llama", n_layer: int = 2, n_head: int = 2, n_head_kv: int = 1
) -> Path:
    """A metadata-only GGUF (no weights) that looks like a base model of `arch`, head dim 4."""
    import numpy as np

    n_embd, head_dim, n_ff = n_head * 4, 4, 16
    outs = {"attn_q": n_embd, "attn_k": n_head_kv * head_dim, "attn_v": n_head_kv * head_dim}
    with gguf_file(path, arch) as writer:
        writer.add_uint32(f"{arch}.block_count", n_layer)
        writer.add_uint32(f"{arch}.attention.head_count", n_head)
        writer.add_uint32(f"{arch}.attention.head_count_kv", n_head_kv)
        writer.add_uint32(f"{arch}.embedding_length", n_embd)
        for layer in range(n_layer):
            for module, (out_dim, in_dim) in {
                **{m: (o, n_embd) for m, o in outs.items()},
                "attn_output": (n_embd, n_embd),
                "ffn_gate": (n_ff, n_embd),
                "ffn_up": (n_ff, n_embd),
                "ffn_down": (n_embd, n_ff),
            }.items():
                name = f"blk.{layer}.{module}.weight"
                writer.add_tensor(name, np.zeros((out_dim, in_dim), dtype=np.float32))
    return path


@pytest.fixture
def fake_base(tmp_path):
    """Factory: fake_base(arch="llama", **sizes) -> path of a metadata-only base GGUF in tmp_path."""

    def make(arch: str = "llama", **sizes) -> Path:
        return write_fake_base(tmp_path / f"fake-{arch}.gguf", arch, **sizes)

    return make
