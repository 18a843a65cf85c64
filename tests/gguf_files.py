"""Writing small GGUF files in tests: the one place that knows the gguf package's write sequence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def gguf_file(path: Path, arch: str) -> Iterator:
    """A gguf.GGUFWriter for a GGUF of `arch` at `path` (its folder made): the key-values and tensors
    added inside the block are written to the file when the block ends."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, arch)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
