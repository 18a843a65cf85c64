"""The sentence-embedder interface the core depends on: texts -> unit-length float32 vectors.

The core (clustering, gap, routing) only sees this protocol; the sentence-transformers
implementation lives in `backends/embedder.py` and is reached through the backend registry
(`backends.load_embedder`), so importing `uno_local` never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

# Rule lists are embedded as one text, one rule per line (the reference joins them the same way).
RULE_SEPARATOR = "\n"


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows of a fixed width."""

    @property
    def dim(self) -> int:
        """Width of each embedding row."""
        ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed `texts`; returns shape (len(texts), dim), float32, unit rows; (0, dim) for []."""
        ...


def rules_text(rules: Sequence[str]) -> str:
    """The text a log's rule list is embedded as (empty string for no rules, as the reference)."""
    return RULE_SEPARATOR.join(r.strip() for r in rules if r.strip())


def embed_logs(
    embedder: Embedder, queries: Sequence[str], rules: Sequence[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """Embed each log's query and its joined rules: (eq, er), both (n, dim), in one batch call."""
    if len(queries) != len(rules):
        raise ValueError(f"embed_logs needs one rule list per query, got {len(queries)} and {len(rules)}.")
    n = len(queries)
    vectors = embedder.encode(list(queries) + [rules_text(r) for r in rules])
    return vectors[:n], vectors[n:]


def embed_rule_lists(embedder: Embedder, rule_lists: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """Embed every rule of every list in one batch; returns one (len(list), dim) array per list."""
    flat = [r for rules in rule_lists for r in rules]
    vectors = embedder.encode(flat)
    out, start = [], 0
    for rules in rule_lists:
        out.append(vectors[start : start + len(rules)])
        start += len(rules)
    return out
