"""Backends behind narrow interfaces, imported lazily by name.

The core (`uno_local`) never imports llama_cpp, torch, mlx or sentence_transformers at import
time; it asks this module for a backend, and a missing optional dependency says which extra to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from uno_local.errors import BackendMissingError


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise BackendMissingError(
            f"The {module} package is not installed; install it with `pip install 'uno-local[{extra}]'`."
        )


def open_runtime(model_path: Path, **options: Any):
    """Load the chat model once into llama.cpp (see backends/llama_runtime.py)."""
    _require("llama_cpp", "llama")
    from backends.llama_runtime import LlamaRuntime

    return LlamaRuntime(model_path, **options)


def get_trainer(name: str, model_path: Path, cache_dir: Path):
    """A Trainer by backend name ('torch' or 'mlx') for the chat model at `model_path`."""
    if name == "torch":
        _require("torch", "torch")
        _require("peft", "torch")
        from backends.torch_trainer import TorchTrainer

        return TorchTrainer.from_gguf(model_path, cache_dir)
    if name == "mlx":
        _require("mlx", "mlx")
        _require("mlx_lm", "mlx")
        from backends.mlx_trainer import MlxTrainer

        return MlxTrainer.from_gguf(model_path, cache_dir)
    raise BackendMissingError(f"Unknown trainer backend {name!r}; choose auto, torch or mlx.")


def open_embedder(path: Path | None = None):
    """The sentence embedder (all-MiniLM-L6-v2 by default)."""
    _require("sentence_transformers", "torch")
    from backends.embedder import SentenceEmbedder

    return SentenceEmbedder(path)
