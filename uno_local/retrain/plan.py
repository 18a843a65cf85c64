"""Shared pieces of a retrain: stage names, constants, the per-cluster plan, the report, the lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from uno_local.distill import FeedbackInput
from uno_local.errors import RetrainLockedError
from uno_local.store import Log
from uno_local.store.learning import ClusterRow
from uno_local.validate import Validation

STAGES = ("collect", "distill", "predict", "pair", "cluster", "gap", "train", "convert", "validate", "deploy")
RULES_TOKENS = 40  # rules are short; grammar-constrained sampling slows down on long strings
MAX_RULE_CHARS = 90
# Fixed, varied prompts for the deploy-time logits parity check (the "fixed prompts").
# Measured on a trained habit adapter: these gave delta correlation 0.991; the adapter's own four
# training queries gave 0.984 (Q4_1's activation quantization in llama.cpp sets the noise floor).
PARITY_PROMPTS = [
    "How do I make a fruit salad?",
    "How do I cook mushrooms?",
    "What is the capital of Japan?",
    "Explain photosynthesis.",
    "How do I boil an egg?",
    "Write a poem about rain.",
]
FALLBACK_WARD = 2.5  # docs/thresholds.md: recovers the scenario topics from 36 to 102 logs


@dataclass
class StageEvent:
    stage: str
    done: int
    total: int
    message: str = ""


Progress = Callable[[StageEvent], None]


@dataclass
class RetrainOptions:
    backend: str = "auto"
    recluster: bool = False  # cluster every log afresh instead of joining existing clusters


@dataclass
class ClusterPlan:
    """A cluster as it moves through train, convert, validate and deploy."""

    row: ClusterRow
    train_ids: list[int] = field(default_factory=list)
    heldout_ids: list[int] = field(default_factory=list)
    reused: bool = False
    expert_ckpts: list[Path] = field(default_factory=list)
    critic_ckpts: list[Path] = field(default_factory=list)
    validation: Validation | None = None
    train_tokens: int = 0

    @property
    def critic_ckpt(self) -> Path | None:
        """The Critic checkpoint that ships: its last epoch (an SFT objective has nothing to judge)."""
        return self.critic_ckpts[-1] if self.critic_ckpts else None


@dataclass
class RetrainReport:
    logs: int
    pairs: int
    clusters: list[dict]
    deployed: list[str]
    seconds: float
    stage_seconds: dict[str, float]
    cached: dict[str, int]
    trained_tokens: int
    gap_skipped_tokens: int
    backend: str

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def retrain_lock(home: Path):
    """Only one retrain at a time, across processes (an OS lock: a crash releases it)."""
    path = home / "retrain.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RetrainLockedError("Another retrain is already running; wait for it to finish.") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def feedback_input(log: Log) -> FeedbackInput:
    fb = log.feedback
    return FeedbackInput(
        query=log.query,
        answer=log.answer,
        rating=fb.rating if fb else None,
        comment=fb.comment if fb else None,
        correction=fb.correction if fb else None,
        next_user=log.next_user,
    )


def choose_backend(name: str) -> str:
    """auto: MLX on Apple silicon, torch elsewhere."""
    if name != "auto":
        return name
    import platform

    return "mlx" if platform.system() == "Darwin" and platform.machine() == "arm64" else "torch"
