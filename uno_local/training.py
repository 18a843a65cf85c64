"""The trainer interface: training examples + TrainConfig -> LoRA checkpoints (one PEFT folder per epoch).

Backend-neutral and torch-free: the pipeline builds `TrainExample`s from feedback and hands them to a
`Trainer` (torch in `backends/torch_trainer.py`, MLX later). The pure helpers here (validation, step
counts, the learning-rate schedule) are shared by every backend so they train alike.

Objectives
- "preference": dpo_weight x DPO (sigmoid, beta = TrainConfig.dpo_beta, reference = the same model with
  the adapter disabled, log-probs summed over answer tokens) + nll_weight x mean-token NLL on the chosen
  answer. A pair whose rejected is None or equals its chosen adds a constant DPO term with zero gradient,
  so it acts as SFT on the chosen answer.
- "sft": NLL on the completion (chosen) tokens only; `rejected` is ignored (the Critic uses this).

Stopping: `should_stop()` is polled every optimizer step. A stop returns the epochs already finished
(`TrainResult.stopped` is True); a stop before the first epoch finished raises `TrainingError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from uno_local.config import TrainConfig
from uno_local.errors import TrainingError

OBJECTIVES = ("preference", "sft")
SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class TrainExample:
    """One training example: a chat context, the answer to learn and (optionally) the answer to avoid."""

    prompt: list[dict]  # chat messages {"role", "content"}, ending with the user turn
    chosen: str
    rejected: str | None = None  # None, or equal to chosen: SFT-only
    source_ids: list[int] = field(default_factory=list)  # feedback/message ids it came from

    @property
    def is_sft(self) -> bool:
        return self.rejected is None or self.rejected == self.chosen


@dataclass
class TrainProgress:
    """Reported after every optimizer step."""

    step: int  # 1-based optimizer step
    total_steps: int
    epoch: int  # 1-based
    loss: float  # loss of this step (mean over its micro-batches)
    reward_margin: float  # mean beta x (chosen - rejected log-ratio) over preference pairs; 0 for SFT
    tokens_per_s: float  # tokens forwarded through the policy per second, since the start
    eta_s: float  # estimated seconds left


@dataclass
class TrainResult:
    """What a run produced: one PEFT folder per finished epoch, oldest first."""

    checkpoints: list[Path]
    metrics: dict  # losses per step and epoch, tokens/s, seconds, device, ...
    stopped: bool = False  # True when should_stop() ended the run early


class Trainer(Protocol):
    """A LoRA trainer backend (torch, MLX)."""

    def train(
        self,
        examples: list[TrainExample],
        config: TrainConfig,
        out_dir: Path,
        *,
        objective: str = "preference",
        on_progress: Callable[[TrainProgress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        """Train a fresh LoRA on `examples`; write `out_dir/epoch-1`, `out_dir/epoch-2`, ..."""
        ...


def validate_inputs(examples: list[TrainExample], config: TrainConfig, objective: str) -> None:
    """Raise TrainingError naming the first problem with the examples or settings."""
    if objective not in OBJECTIVES:
        raise TrainingError(f"Unknown training objective {objective!r}; use one of {', '.join(OBJECTIVES)}.")
    if not examples:
        raise TrainingError("There are no training examples; give feedback on some answers first.")
    if config.schedule not in SCHEDULES:
        raise TrainingError(
            f"Unknown learning-rate schedule {config.schedule!r}; use cosine, linear or constant."
        )
    for name in ("epochs", "batch_size", "grad_accum", "lora_r", "max_prompt_tokens", "max_answer_tokens"):
        if getattr(config, name) < 1:
            raise TrainingError(f"train.{name} must be at least 1, got {getattr(config, name)}.")
    if not 0.0 <= config.warmup_ratio < 1.0:
        raise TrainingError(f"train.warmup_ratio must be in [0, 1), got {config.warmup_ratio}.")
    for i, ex in enumerate(examples):
        if not ex.prompt or ex.prompt[-1].get("role") != "user":
            raise TrainingError(f"Training example {i} has no prompt ending with a user message.")
        if not ex.chosen.strip():
            raise TrainingError(f"Training example {i} has an empty answer to learn.")


def steps_per_epoch(n_examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch; the last step may have fewer micro-batches."""
    micro_batches = math.ceil(n_examples / batch_size)
    return math.ceil(micro_batches / grad_accum)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate before optimizer step `step` (0-based).

    Linear warmup from 0, then cosine or linear decay to 0 at `total_steps`, or constant.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_dir(out_dir: Path, epoch: int) -> Path:
    """Folder of the checkpoint written after `epoch` (1-based)."""
    return out_dir / f"epoch-{epoch}"
