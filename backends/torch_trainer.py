"""TrainExamples + TrainConfig -> PEFT LoRA checkpoints (`out_dir/epoch-N`), trained in torch on the HF base.

Our own loop (no TRL): for a preference batch, the chosen and rejected answers go through the policy in one
forward and, without gradients, through the same model with the adapter disabled (the DPO reference, no
second copy). The reference log-probs never change during a run, so each pair's are forwarded once, the
first time the pair is seen, and reused in later epochs (`ReferenceLogps`). Pairs whose rejected equals
their chosen are not forwarded twice: their DPO margin is exactly zero, a constant term with zero gradient,
so they act as SFT. Forwards run under bf16 autocast where the hardware computes bf16 natively, with
float32 LoRA weights, optimizer and loss, else in float32 (`TrainConfig.precision`, "auto";
docs/benchmarks.md has the speed and the learning measured both ways); in bf16 the frozen base linears
are stored in bf16 once, the rounding autocast applied at every forward. No gradient checkpointing
(faster at this size), seeded: the same seed, data and thread count give the same losses on the same
machine (bf16 sums split with the threads).
LoRA goes on the last `TrainConfig.lora_layers` decoder layers: nothing below them needs a gradient, so
autograd's backward stops at the first adapted layer, and the frozen layers below it run once per sequence
for the whole run (`backends/frozen_prefix.py`).
Activation memory grows with the tokens in one forward, so a micro-batch is cut into forwards of at most
`TrainConfig.max_forward_tokens` padded tokens, each backpropagated with its exact share of the loss
(same gradients, bounded memory).
A run's metrics carry the reference's mean per-token log-probs of the chosen and rejected answers
(`reference_logp_chosen`/`_rejected`): the model-intrinsic gap, without a second pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backends.frozen_prefix import FrozenPrefix
from backends.torch_precision import autocast, cast_frozen_linears, forward_dtype
from backends.torch_threads import cpu_threads
from uno_local.config import TrainConfig
from uno_local.errors import TrainingError
from uno_local.training import (
    ReferenceCache,
    TrainExample,
    TrainProgress,
    TrainResult,
    answer_window,
    epoch_dir,
    habit_weights,
    lora_layer_indices,
    lr_factor,
    run_epochs,
    shared_prefix,
    steps_per_epoch,
    validate_inputs,
)

if TYPE_CHECKING:  # torch is imported lazily: only type checkers see it here
    import torch

IGNORE = -100  # label of tokens that are not learned (prompt, padding)
ADAM_BETAS = (0.9, 0.98)  # the UNO reference's optimizer settings
ADAM_EPS = 1e-8


@dataclass
class Encoded:
    """One tokenized sequence: prompt then answer; labels are IGNORE on the prompt."""

    input_ids: list[int]
    labels: list[int]
    n_prompt: int  # leading tokens not learned
    weights: list[float] | None = None  # NLL weight per learned token (`training.habit_weights`); None = 1


def template_ids(tokenizer, prompt: list[dict], answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids), untruncated: the chat-templated `prompt` and what the template adds for the
    assistant turn (for ChatML: the answer, `<|im_end|>` and a newline), so the end-of-turn token is learned
    too."""
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": answer}], tokenize=False
    )
    if full_text.startswith(prompt_text):
        answer_text = full_text[len(prompt_text) :]
    else:  # a template that rewrites earlier turns: fall back to the answer and end-of-sequence
        answer_text = answer + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    return prompt_ids, tokenizer(answer_text, add_special_tokens=False)["input_ids"]


def window(
    prompt_ids: list[int],
    answer_ids: list[int],
    max_prompt: int,
    max_answer: int,
    start: int,
    stop: int | None = None,
) -> Encoded:
    """The last `max_prompt` prompt tokens and the answer tokens before `start` (unlearned context), then
    the `max_answer` answer tokens from `start` (`training.answer_window` picks it), learned up to answer
    token `stop` (all of them for None)."""
    context = prompt_ids[-max_prompt:] + answer_ids[:start]
    learned = answer_ids[start : start + max_answer]
    labels = learned if stop is None else learned[: max(0, stop - start)]
    labels = labels + [IGNORE] * (len(learned) - len(labels))
    return Encoded(context + learned, [IGNORE] * len(context) + labels, len(context))


def encode(tokenizer, prompt: list[dict], answer: str, max_prompt: int, max_answer: int) -> Encoded:
    """Chat-template `prompt` (keeping its last `max_prompt` tokens) and append `answer` (first `max_answer`)."""
    return window(*template_ids(tokenizer, prompt, answer), max_prompt, max_answer, 0)


def encode_pairs(
    tokenizer, examples: list[TrainExample], config: TrainConfig, objective: str
) -> list[tuple[Encoded, Encoded | None]]:
    """(chosen, rejected) per example; rejected is None for SFT examples and for the "sft" objective.

    Both answers of a pair learn the same window of answer positions (`training.answer_window`): a long pair
    keeps the tokens where chosen and rejected differ, so a habit at the end of a long answer is learned.
    When chosen extends rejected (a sign-off appended), rejected is learned only up to where they part
    (`training.shared_prefix`), so its end-of-turn is not pushed down. The chosen answer's NLL weights
    come from `training.habit_weights`."""
    pairs = []
    limits = (config.max_prompt_tokens, config.max_answer_tokens)
    for ex in examples:
        prompt_ids, chosen_ids = template_ids(tokenizer, ex.prompt, ex.chosen)
        rejected, rejected_ids = None, None
        if objective == "preference" and not ex.is_sft:
            rejected_ids = template_ids(tokenizer, ex.prompt, ex.rejected)[1]
        start = answer_window(chosen_ids, rejected_ids, config.max_answer_tokens)
        chosen = window(prompt_ids, chosen_ids, *limits, start)
        if rejected_ids is not None:
            parted = shared_prefix(chosen_ids, rejected_ids)
            rejected = window(
                prompt_ids, rejected_ids, *limits, start, parted if ex.extends_rejected else None
            )
            if ex.appends:
                n_learned = len(chosen.input_ids) - chosen.n_prompt
                chosen.weights = habit_weights(n_learned, parted - start, config.habit_share)
        pairs.append((chosen, rejected))
    return pairs


def collate(
    seqs: list[Encoded], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad into (input_ids, attention_mask, labels, NLL weights) tensors."""
    import torch

    width = max(len(s.input_ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    weights = torch.ones((len(seqs), width), dtype=torch.float32)
    for i, s in enumerate(seqs):
        ids[i, : len(s.input_ids)] = torch.tensor(s.input_ids)
        mask[i, : len(s.input_ids)] = 1
        labels[i, : len(s.labels)] = torch.tensor(s.labels)
        if s.weights is not None:
            weights[i, s.n_prompt : len(s.input_ids)] = torch.tensor(s.weights)
    return ids, mask, labels, weights


def sequence_logps(
    model, seqs: list[Encoded], pad_id: int, device: str, prefix: FrozenPrefix | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Summed answer log-prob per sequence, the same sum under the sequences' NLL weights, answer token
    counts, and tokens forwarded.

    With a `prefix`, the frozen layers below the first LoRA layer run once per sequence (cached there).
    """
    import torch.nn.functional as F

    ids, mask, labels, weights = (t.to(device) for t in collate(seqs, pad_id))
    width = ids.shape[1]
    keep = min(width, width - min(s.n_prompt for s in seqs) + 1)  # logits only where answers are predicted
    if prefix is None:
        out = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False)
    else:
        embeds = prefix.inputs_embeds(seqs, ids, mask)
        with prefix.adapted_only():
            out = model(inputs_embeds=embeds, attention_mask=mask, logits_to_keep=keep, use_cache=False)
    logits = out.logits.float()
    targets = labels[:, ids.shape[1] - keep + 1 :]
    target_weights = weights[:, ids.shape[1] - keep + 1 :]
    # (rows, vocab) layout: the CPU kernel for (batch, vocab, time) was about 1e-4 off in float32 (measured).
    flat = logits[:, :-1].reshape(-1, logits.shape[-1])
    token_nll = F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="none")
    token_nll = token_nll.view(targets.shape)
    counts = (targets != IGNORE).sum(dim=1)
    return -token_nll.sum(dim=1), -(token_nll * target_weights).sum(dim=1), counts, int(mask.sum())


class ReferenceLogps(ReferenceCache):
    """The reference cache, forwarding missing pairs through the model with its adapter disabled."""

    def get(
        self,
        model,
        keyed: list[tuple[int, Encoded, Encoded]],
        pad_id: int,
        device: str,
        prefix: FrozenPrefix | None = None,
    ) -> torch.Tensor:
        """Reference log-probs of the chosen answers, then of the rejected ones, in the order of `keyed`."""
        import torch

        missing = [keyed[i] for i in self.missing([k for k, _, _ in keyed])]
        if missing:  # one no-grad forward for the pairs not seen before (all of them in the first epoch)
            seqs = [c for _, c, _ in missing] + [r for _, _, r in missing]
            with torch.no_grad(), model.disable_adapter():
                ref, _, counts, _ = sequence_logps(model, seqs, pad_id, device, prefix)
            self.store([k for k, _, _ in missing], ref.tolist(), counts.tolist())
        return torch.tensor(self.lookup([k for k, _, _ in keyed]), dtype=torch.float32, device=device)


@dataclass
class LossParts:
    """Sums over some pairs of one micro-batch (tensors keep their graph); the means are properties."""

    dpo_sum: torch.Tensor  # -log sigmoid(margin) per pair; log(2), with no gradient, for SFT pairs
    nll_sum: torch.Tensor  # summed NLL of the chosen answer tokens, under their weights
    n_pairs: int
    n_answer: int  # chosen answer tokens
    margin_sum: float  # beta x (chosen - rejected log-ratio), over preference pairs
    n_pref: int
    tokens: int  # tokens forwarded through the policy

    @property
    def dpo(self) -> torch.Tensor:
        return self.dpo_sum / self.n_pairs

    @property
    def nll(self) -> torch.Tensor:
        return self.nll_sum / max(1, self.n_answer)

    @property
    def reward_margin(self) -> float:
        return self.margin_sum / self.n_pref if self.n_pref else 0.0


def batch_loss(
    model,
    pairs: list[tuple[Encoded, Encoded | None]],
    beta: float,
    objective: str,
    pad_id: int,
    device: str,
    reference: ReferenceLogps | None = None,
    keys: list[int] | None = None,
    prefix: FrozenPrefix | None = None,
) -> LossParts:
    """Compute the DPO and NLL terms for `pairs` of (chosen, rejected or None for SFT).

    `reference` caches the reference log-probs under `keys` (one per pair); without it they are forwarded.
    `prefix` (policy and reference alike) runs the frozen bottom layers once per sequence.
    """
    import torch
    import torch.nn.functional as F

    chosen = [c for c, _ in pairs]
    pref = [i for i, (_, r) in enumerate(pairs) if r is not None]
    rejected = [pairs[i][1] for i in pref] if objective == "preference" else []
    logps, weighted, counts, tokens = sequence_logps(model, chosen + rejected, pad_id, device, prefix)
    n = len(chosen)
    dpo = torch.full((n,), math.log(2.0), device=logps.device)
    margin_sum = 0.0
    if rejected:
        keys = list(range(n)) if keys is None else keys
        reference = ReferenceLogps() if reference is None else reference
        keyed = [(keys[i], chosen[i], pairs[i][1]) for i in pref]
        ref = reference.get(model, keyed, pad_id, device, prefix)
        idx = torch.tensor(pref, device=logps.device)
        p = len(pref)
        margins = beta * ((logps[idx] - ref[:p]) - (logps[n:] - ref[p:]))
        dpo = dpo.index_put((idx,), -F.logsigmoid(margins))
        margin_sum = float(margins.detach().sum())
    n_answer = int(counts[:n].sum())
    return LossParts(dpo.sum(), -weighted[:n].sum(), n, n_answer, margin_sum, len(rejected), tokens)


def chunk_pairs(pairs: list[tuple[Encoded, Encoded | None]], max_tokens: int) -> list[list[int]]:
    """Split a micro-batch (indices, in order) into forwards of at most `max_tokens` padded tokens.

    Activation memory grows with the tokens in one forward (about 3.3 MB per token here, measured), so
    a long-context batch is cut into several forwards; a single pair is never split.
    """
    chunks: list[list[int]] = []
    width, rows = 0, 0
    for i, (c, r) in enumerate(pairs):
        seqs = [c] if r is None else [c, r]
        new_width = max(width, *(len(s.input_ids) for s in seqs))
        if chunks and (rows + len(seqs)) * new_width <= max_tokens:
            chunks[-1].append(i)
            width, rows = new_width, rows + len(seqs)
        else:
            chunks.append([i])
            width, rows = max(len(s.input_ids) for s in seqs), len(seqs)
    return chunks


def micro_batch_backward(
    model,
    pairs: list[tuple[Encoded, Encoded | None]],
    config: TrainConfig,
    objective: str,
    pad_id: int,
    device: str,
    max_tokens: int,
    scale: float,
    reference: ReferenceLogps | None = None,
    keys: list[int] | None = None,
    prefix: FrozenPrefix | None = None,
) -> tuple[float, float, int, int]:
    """Backpropagate `scale` x the micro-batch loss, chunk by chunk with exact weights.

    `reference`, `keys` (one per pair) and `prefix` are passed to `batch_loss`.
    Returns (loss, margin sum, preference pairs, tokens forwarded).
    """
    n_pairs = len(pairs)
    n_answer = sum(len(c.input_ids) - c.n_prompt for c, _ in pairs)
    keys = list(range(n_pairs)) if keys is None else keys
    loss_value, margin_sum, n_pref, tokens = 0.0, 0.0, 0, 0
    for chunk in chunk_pairs(pairs, max_tokens):
        sub = [pairs[i] for i in chunk]
        with autocast(device, config.precision):
            parts = batch_loss(
                model,
                sub,
                config.dpo_beta,
                objective,
                pad_id,
                device,
                reference,
                [keys[i] for i in chunk],
                prefix,
            )
        loss = parts.nll_sum / n_answer
        if objective == "preference":
            loss = config.dpo_weight * parts.dpo_sum / n_pairs + config.nll_weight * loss
        (loss * scale).backward()
        loss_value += float(loss.detach())
        margin_sum += parts.margin_sum
        n_pref += parts.n_pref
        tokens += parts.tokens
    return loss_value, margin_sum, n_pref, tokens


def resolve_device(name: str) -> str:
    """auto -> cuda, else mps, else cpu; an explicit device must be available."""
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    }
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available[d])
    if name not in available:
        raise TrainingError(f"Unknown training device {name!r}; use auto, cuda, mps or cpu.")
    if not available[name]:
        raise TrainingError(f"The training device {name} is not available on this machine; use auto or cpu.")
    return name


class TorchTrainer:
    """The `Trainer` on PyTorch + PEFT; `base_dir` is the HF folder from `backends.hf_base.ensure_hf_base`."""

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)

    @classmethod
    def from_gguf(cls, gguf_path: Path, cache_dir: Path) -> TorchTrainer:
        from backends.hf_base import ensure_hf_base

        # The GGUF dequantizer's progress bar is plain tqdm, which quiet_transformers() cannot reach.
        with contextlib.redirect_stderr(io.StringIO()):
            return cls(ensure_hf_base(gguf_path, cache_dir))

    def load(self, config: TrainConfig) -> tuple[object, torch.nn.Module, str]:
        """(tokenizer, fresh PEFT model, device) for one run, seeded so LoRA init repeats; transformers'
        progress bars off."""
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from backends.hf_base import lora_targets, quiet_transformers

        quiet_transformers()
        device = resolve_device(config.device)
        tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        base = AutoModelForCausalLM.from_pretrained(self.base_dir, dtype=torch.float32).to(device)
        torch.manual_seed(config.seed)
        n_layers = base.config.num_hidden_layers
        layers = lora_layer_indices(n_layers, config.lora_layers)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=lora_targets(
                list(config.target_modules), {name.rsplit(".", 1)[-1] for name, _ in base.named_modules()}
            ),
            layers_to_transform=layers if len(layers) < n_layers else None,
            bias="none",
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():  # PEFT reads a transformers property deprecated in v5 (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(base, lora)
        dtype = forward_dtype(device, config.precision)
        if dtype is not None:
            cast_frozen_linears(model, dtype)
        return tokenizer, model, device

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
        """Train a fresh LoRA; see `uno_local.training` for objectives and the stop contract."""
        validate_inputs(examples, config, objective)
        with cpu_threads(config.threads):  # the count goes back afterwards: it is process-wide
            return self._train(examples, config, out_dir, objective, on_progress, should_stop)

    def _train(
        self,
        examples: list[TrainExample],
        config: TrainConfig,
        out_dir: Path,
        objective: str,
        on_progress: Callable[[TrainProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> TrainResult:
        import torch

        tokenizer, model, device = self.load(config)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        enc = encode_pairs(tokenizer, examples, config, objective)
        reference = ReferenceLogps()  # lives for this run only: the next run trains a fresh adapter
        adapted = model.peft_config[model.active_adapter].layers_to_transform  # None: every layer
        prefix = FrozenPrefix.for_model(model, adapted or [])
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=config.weight_decay
        )
        total = steps_per_epoch(len(enc), config.batch_size, config.grad_accum) * config.epochs
        warmup = int(config.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total, warmup, config.schedule)
        )

        def step(group: list[list[int]], index: int, total: int) -> tuple[float, float, int]:
            result = self._accumulate(model, enc, group, config, objective, pad_id, device, reference, prefix)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            return result

        def save(epoch: int, loss: float) -> Path:
            return self._save(model, out_dir, epoch, config, objective, examples, loss)

        out_dir.mkdir(parents=True, exist_ok=True)
        model.train()
        result = run_epochs(len(enc), config, step, save, on_progress, should_stop)
        precision = "bf16" if forward_dtype(device, config.precision) else "fp32"
        result.metrics.update(objective=objective, device=device, precision=precision)
        result.metrics.update(reference.logp_means())
        return result

    def _accumulate(
        self,
        model,
        enc: list,
        group: list[list[int]],
        config: TrainConfig,
        objective: str,
        pad_id: int,
        device: str,
        reference: ReferenceLogps,
        prefix: FrozenPrefix | None,
    ) -> tuple[float, float, int]:
        """Backpropagate one optimizer step's micro-batches; (mean loss, mean reward margin, tokens)."""
        loss_sum, margin_sum, n_pref, tokens = 0.0, 0.0, 0, 0
        for batch in group:
            loss, m_sum, m_n, n_tokens = micro_batch_backward(
                model,
                [enc[i] for i in batch],
                config,
                objective,
                pad_id,
                device,
                config.max_forward_tokens,
                1.0 / len(group),
                reference,
                batch,
                prefix,
            )
            loss_sum += loss
            margin_sum += m_sum
            n_pref += m_n
            tokens += n_tokens
        return loss_sum / len(group), (margin_sum / n_pref if n_pref else 0.0), tokens

    def _save(
        self,
        model,
        out_dir: Path,
        epoch: int,
        config: TrainConfig,
        objective: str,
        examples: list,
        loss: float,
    ) -> Path:
        """Write the epoch's PEFT folder (temp + rename) with a note of what it learned from."""
        final = epoch_dir(out_dir, epoch)
        tmp = out_dir / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        note = {
            "epoch": epoch,
            "objective": objective,
            "mean_loss": loss,
            "source_ids": sorted({i for ex in examples for i in ex.source_ids}),
            "config": asdict(config),
        }
        (tmp / "uno_train.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final
