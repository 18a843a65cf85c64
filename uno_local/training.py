"""The trainer interface: training examples + TrainConfig -> LoRA checkpoints (one PEFT folder per epoch).

Backend-neutral and torch-free: the pipeline builds `TrainExample`s from feedback and hands them to a
`Trainer` (torch in `backends/torch_trainer.py`, MLX in `backends/mlx_trainer.py`). The pure helpers
here (validation, step counts, the learning-rate schedule, the reference cache) are shared by every
backend so they train alike.

Objectives
- "preference": dpo_weight x DPO (sigmoid, beta = TrainConfig.dpo_beta, reference = the same model with
  the adapter disabled, log-probs summed over answer tokens) + nll_weight x mean-token NLL on the chosen
  answer (`TrainConfig.habit_share` can weigh an appended ending more: `habit_weights`). A pair whose
  rejected is None or equals its chosen adds a constant DPO term with zero gradient, so it acts as SFT
  on the chosen answer. A pair cut to the answer budget whose chosen extends its
  rejected answer (a sign-off appended) learns the rejected answer only up to where they part
  (`shared_prefix`): its end-of-turn is never pushed down.
- "sft": NLL on the completion (chosen) tokens only; `rejected` is ignored (the Critic uses this).

Stopping: `should_stop()` is polled every optimizer step. A stop returns the epochs already finished
(`TrainResult.stopped` is True); a stop before the first epoch finished raises `TrainingError`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from uno_local.config import TrainConfig
from uno_local.errors import TrainingError

OBJECTIVES = ("preference", "sft")
SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainExample:
    """One training example: a chat context, the answer to learn and (optionally) the answer to avoid."""

    prompt: list[dict]  # chat messages {"role", "content"}, ending with the user turn
    chosen: str
    rejected: str | None = None  # None, or equal to chosen: SFT-only
    source_ids: list[int] = field(default_factory=list)  # feedback/message ids it came from
    fitted: bool = False  # the pair was cut to the chat's answer budget (`pair.fit_to_budget`)

    @property
    def is_sft(self) -> bool:
        return self.rejected is None or self.rejected == self.chosen

    @property
    def appends(self) -> bool:
        """The chosen answer is the rejected one with something added at its end (a sign-off)."""
        if self.is_sft:
            return False
        kept = self.rejected.rstrip()
        return bool(kept) and self.chosen.startswith(kept) and self.chosen.rstrip() != kept

    @property
    def extends_rejected(self) -> bool:
        """A pair cut to the answer budget that `appends`: the rejected answer's own ending, its
        end-of-turn, is then not pushed down (`shared_prefix`). Only budgeted pairs: that is where it was
        measured to help (docs/eval.md, pet-care G against F); short logs train as they always did."""
        return self.fitted and self.appends


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


class ReferenceCache:
    """Answer log-probs of each preference pair under the DPO reference (the model with its adapter
    disabled), keyed by the pair's index in the run. The reference never changes during a run, so a
    backend forwards a pair the first time it is seen (`missing`, then `store`) and reuses the values in
    every later epoch (`lookup`). The per-token means are what the model-intrinsic gap needs, so a run
    reports them for free (`logp_means`) instead of a second pass over the pairs."""

    def __init__(self) -> None:
        self.values: dict[int, tuple[float, float]] = {}  # key -> summed (chosen, rejected)
        self.per_token: dict[int, tuple[float, float]] = {}  # key -> mean per answer token

    def missing(self, keys: list[int]) -> list[int]:
        """The positions in `keys` whose pairs have not been forwarded yet."""
        return [i for i, k in enumerate(keys) if k not in self.values]

    def store(self, keys: list[int], sums: list[float], counts: list[int]) -> None:
        """`sums` and `counts` hold the chosen answers of `keys`, then the rejected ones, in that order."""
        n = len(keys)
        for j, k in enumerate(keys):  # a float32 stored as a Python float round-trips exactly
            chosen, rejected = float(sums[j]), float(sums[n + j])
            self.values[k] = (chosen, rejected)
            self.per_token[k] = (chosen / max(1, int(counts[j])), rejected / max(1, int(counts[n + j])))

    def lookup(self, keys: list[int]) -> list[float]:
        """Summed log-probs of the chosen answers of `keys`, then of the rejected ones."""
        return [self.values[k][0] for k in keys] + [self.values[k][1] for k in keys]

    def logp_means(self) -> dict[str, float]:
        """Mean over the pairs seen of the per-token reference log-prob of the chosen and of the rejected
        answer, over the tokens the trainer learns (metrics for the intrinsic gap); empty when the run
        had no preference pair."""
        if not self.per_token:
            return {}
        pairs = [self.per_token[k] for k in sorted(self.per_token)]
        return {
            "reference_logp_chosen": math.fsum(c for c, _ in pairs) / len(pairs),
            "reference_logp_rejected": math.fsum(r for _, r in pairs) / len(pairs),
        }


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


@dataclass(frozen=True)
class BaseSize:
    """What a retrain's peak-memory estimate needs from its base model (`models.describe` reads it)."""

    n_params: int
    n_vocab: int
    n_layer: int
    n_embd: int
    file_bytes: int  # the GGUF that llama.cpp serves from during the retrain


# Calibrated on the embedded SmolLM2-135M in float32 at 256 tokens a forward, whose 200-log retrain peaked
# at 2.85 GiB RSS (docs/benchmarks.md): torch, transformers, the embedder, llama.cpp's contexts and Python.
PROCESS_BYTES = 1_450_000_000
# Kept for the backward pass per token, decoder layer and hidden unit (SmolLM2's forwards measured about
# 3.3 MB a token in all: backends/torch_trainer.py, chunk_pairs).
ACTIVATION_BYTES = 160
LOGIT_BYTES = 12  # per token and vocabulary entry: float32 logits, their log-softmax and its gradient


def estimate_peak_bytes(size: BaseSize, config: TrainConfig) -> int:
    """Pure: a retrain's peak memory on the CPU (or Apple silicon's unified memory): the process, the base
    dequantized (4 bytes a weight, 2 with `precision = "bf16"`) with 20% for LoRA, optimizer and gradients,
    the served GGUF, and the activations and logits of one forward of `max_forward_tokens`."""
    weight_bytes = 2 if config.precision == "bf16" else 4
    per_token = size.n_layer * size.n_embd * ACTIVATION_BYTES + size.n_vocab * LOGIT_BYTES
    return (
        PROCESS_BYTES
        + int(size.n_params * weight_bytes * 1.2)
        + size.file_bytes
        + config.max_forward_tokens * per_token
    )


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
    if config.precision not in PRECISIONS:
        raise TrainingError(f"Unknown training precision {config.precision!r}; use auto, bf16 or fp32.")
    if config.lora_layers < 0:
        raise TrainingError(f"train.lora_layers must be 0 (every layer) or more, got {config.lora_layers}.")
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


def answer_window(chosen: list[int], rejected: list[int] | None, max_answer: int) -> int:
    """Where the `max_answer` learned answer tokens start, so a long pair keeps what tells it apart.

    An answer that fits, an SFT example (no rejected) and a pair that differs early learn from the start.
    Otherwise the window moves right: it ends at the longer answer's end, or starts `max_answer // 4`
    tokens before the first differing token, whichever is earlier. So the divergence (a closing line, a
    changed last paragraph) is always inside the window of at least one answer, and a pair whose texts
    differ never collapses into identical trained tokens. The tokens before the window stay in the input
    as unlearned context, so the model still sees the whole answer it continues.
    """
    if rejected is None:
        return 0
    longest = max(len(chosen), len(rejected))
    if longest <= max_answer:
        return 0
    return max(0, min(shared_prefix(chosen, rejected) - max_answer // 4, longest - max_answer))


def shared_prefix(chosen: list[int], rejected: list[int]) -> int:
    """How many leading tokens the two answers share.

    For a pair whose chosen answer extends the rejected one (`TrainExample.extends_rejected`), the trainer
    learns the rejected answer only up to here. Past it the rejected answer holds nothing but its
    end-of-turn, and DPO pushing that down teaches "never stop": measured on the pet-care eval (session
    11), cat answers taught to end with "Purr-fect." repeated it until the token limit. Without it, the
    pair's DPO margin is the log-ratio of chosen's own ending: the sign-off and the end-of-turn after it.
    """
    shared = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        shared += 1
    return shared


def habit_weights(n_learned: int, parted_at: int, share: float) -> list[float] | None:
    """NLL weight per learned chosen-answer token, or None when every token weighs 1.

    `parted_at` learned tokens are shared with the rejected answer; the rest (where the habit is) carry at
    least `share` of the answer's weight, and the answer's total stays `n_learned`. A sign-off appended to
    a 160-token answer is about 8% of its tokens: with a mean-token NLL its gradient is a tenth of a habit
    that reshapes the whole answer (a numbered list). Measured (docs/eval.md, session 30): more sign-offs
    learned, and more answers collapsed to the sign-off alone, so it is off by default.
    """
    parted_at = max(0, min(parted_at, n_learned))
    habit = n_learned - parted_at
    if share <= 0 or habit == 0 or parted_at == 0 or habit / n_learned >= share:
        return None
    shared_w = (1.0 - share) * n_learned / parted_at
    habit_w = share * n_learned / habit
    return [shared_w] * parted_at + [habit_w] * habit


def steps_per_epoch(n_examples: int, batch_size: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch; the last step may have fewer micro-batches."""
    micro_batches = math.ceil(n_examples / batch_size)
    return math.ceil(micro_batches / grad_accum)


def lora_layer_indices(n_layers: int, lora_layers: int) -> list[int]:
    """The decoder layers (0-based) that get LoRA weights: the last `lora_layers`, or all for 0."""
    if lora_layers <= 0 or lora_layers >= n_layers:
        return list(range(n_layers))
    return list(range(n_layers - lora_layers, n_layers))


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


def run_epochs(
    n_examples: int,
    config: TrainConfig,
    step_fn: Callable[[list[list[int]], int, int], tuple[float, float, int]],
    save_fn: Callable[[int, float], Path],
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """The backend-neutral epoch and step loop of every trainer.

    Each epoch shuffles the example indices with `config.seed` (so torch and MLX see the same batches),
    cuts them into micro-batches of `batch_size` and groups `grad_accum` of them per optimizer step.
    `step_fn(group, step, total)` runs one optimizer step (0-based `step`) and returns (loss, reward
    margin, tokens); `save_fn(epoch, mean_loss)` writes the epoch's checkpoint. `should_stop` is asked
    before each step: a stop keeps the finished epochs, and a stop before the first raises TrainingError.
    The metrics hold the common figures; backends add their device.
    """
    per_epoch = steps_per_epoch(n_examples, config.batch_size, config.grad_accum)
    total = per_epoch * config.epochs
    rng = random.Random(config.seed)
    checkpoints: list[Path] = []
    losses: list[float] = []
    margins: list[float] = []
    epoch_losses: list[float] = []
    step, tokens, start, stopped = 0, 0, time.perf_counter(), False
    for epoch in range(1, config.epochs + 1):
        order = list(range(n_examples))
        rng.shuffle(order)
        batches = [order[i : i + config.batch_size] for i in range(0, n_examples, config.batch_size)]
        for s in range(0, len(batches), config.grad_accum):
            if should_stop is not None and should_stop():
                stopped = True
                break
            loss, margin, n_tokens = step_fn(batches[s : s + config.grad_accum], step, total)
            tokens += n_tokens
            step += 1
            losses.append(loss)
            margins.append(margin)
            if on_progress is not None:
                elapsed = time.perf_counter() - start
                eta = elapsed / step * (total - step)
                on_progress(TrainProgress(step, total, epoch, loss, margin, tokens / elapsed, eta))
        if stopped:
            break
        epoch_losses.append(sum(losses[-per_epoch:]) / per_epoch)
        checkpoints.append(save_fn(epoch, epoch_losses[-1]))
    if not checkpoints:
        raise TrainingError("Training was stopped before its first epoch finished; nothing was saved.")
    elapsed = time.perf_counter() - start
    metrics = {
        "examples": n_examples,
        "steps": step,
        "losses": losses,
        "reward_margins": margins,
        "epoch_losses": epoch_losses,
        "seconds": elapsed,
        "seconds_per_step": elapsed / max(1, step),
        "tokens": tokens,
        "tokens_per_s": tokens / elapsed,
    }
    return TrainResult(checkpoints, metrics, stopped)
