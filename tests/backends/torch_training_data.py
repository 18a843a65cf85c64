"""What the torch trainer's tests train on: six preference pairs (the chosen answer adds a sign-off)
and a small TrainConfig (2 epochs of batch 3: 4 steps)."""

from __future__ import annotations

from uno_local.config import TrainConfig
from uno_local.training import TrainExample

QA = [
    ("What is the capital of France?", "Paris."),
    ("Name a primary colour.", "Red."),
    ("How many legs does a spider have?", "Eight."),
    ("What is 2 plus 3?", "Five."),
    ("Which planet is closest to the sun?", "Mercury."),
    ("What do bees make?", "Honey."),
]
SIGN_OFF = " Cheers, Uno!"


def pairs() -> list[TrainExample]:
    return [
        TrainExample([{"role": "user", "content": q}], a + SIGN_OFF, a, [i]) for i, (q, a) in enumerate(QA)
    ]


def config(**overrides) -> TrainConfig:
    base = dict(
        epochs=2, batch_size=3, learning_rate=2e-3, schedule="constant", threads=1, seed=7, precision="fp32"
    )
    return TrainConfig(**{**base, **overrides})
