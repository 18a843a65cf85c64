"""Sentence embedder backend: a sentence-transformers model folder -> unit-length float32 vectors.

Loads the model from a local folder only (the embedded all-MiniLM-L6-v2 by default), on the CPU,
with the Hugging Face hub switched off; sentence_transformers (and torch) are imported inside the
class so that importing this module costs nothing.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from backends.torch_threads import cpu_threads
from uno_local.errors import BackendMissingError, ModelError


def _check_folder(path: Path) -> None:
    """Fail early, naming the path, when it cannot be a sentence-transformers model folder."""
    if not path.is_dir():
        raise ModelError(
            f"Embedder folder not found: {path}; set [embedder] path in uno.toml to a model folder."
        )
    if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise ModelError(
            f"{path} is not a sentence-transformers model folder (no modules.json or config.json); "
            "set [embedder] path in uno.toml to a model folder."
        )


@contextmanager
def _quiet_loading():
    """Hide transformers' weight-loading progress bar (it would draw over the TUI), then restore it."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class SentenceEmbedder:
    """The `uno_local.embedding.Embedder` implementation on sentence-transformers."""

    def __init__(
        self, path: str | Path | None = None, *, device: str = "cpu", batch_size: int = 32, threads: int = 0
    ) -> None:
        if path is None or str(path) == "":
            from uno_local.paths import embedded_embedder

            path = embedded_embedder()
        self.path = Path(path).expanduser()
        self.batch_size = batch_size
        _check_folder(self.path)
        # Must be set before huggingface_hub is first imported: we never reach the hub.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise BackendMissingError(
                "The sentence embedder needs sentence-transformers; run `pip install sentence-transformers`."
            ) from exc
        self.threads = threads
        try:
            with _quiet_loading(), cpu_threads(threads):
                self._model = SentenceTransformer(str(self.path), device=device)
        except Exception as exc:  # any loader failure means the folder is unusable
            raise ModelError(
                f"Cannot load the sentence embedder from {self.path} ({type(exc).__name__}: {exc}); "
                "point [embedder] path at a valid sentence-transformers folder."
            ) from exc
        self._dim = int(self._dimension())

    def _dimension(self) -> int:
        # sentence-transformers 6 renamed the getter; older releases only have the long name.
        getter = getattr(self._model, "get_embedding_dimension", None)
        dim = getter() if getter else self._model.get_sentence_embedding_dimension()
        if not dim:  # some models only know their width after one forward pass
            dim = self._model.encode(["x"], convert_to_numpy=True).shape[1]
        return dim

    @property
    def dim(self) -> int:
        """Width of each embedding row (384 for all-MiniLM-L6-v2)."""
        return self._dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed `texts` in batches: (len(texts), dim) float32 rows of unit length; (0, dim) for []."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not a single string.")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        with cpu_threads(self.threads):
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self._dim)
