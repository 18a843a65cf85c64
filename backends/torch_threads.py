"""torch's CPU thread count for one piece of work, given back afterwards.

`torch.set_num_threads` is process-wide: a training run or an embedder asked for 1 thread would
otherwise leave every later run in the process on 1 thread, slower and with other roundings (bf16
sums split differently), so the same data would train a different adapter depending on what ran
before (measured: the UNO-loop eval after the trainer's unit tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block on `n` torch CPU threads (0: leave the count as it is), then restore the count."""
    import torch

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
