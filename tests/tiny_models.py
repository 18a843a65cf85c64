"""The tiny random-weight transformers models the tests build: one size, quick on 2 CPU cores."""

from __future__ import annotations

# Config keyword arguments shared by the llama-like architectures (head dim 16, grouped-query attention).
TINY_SIZES = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)
