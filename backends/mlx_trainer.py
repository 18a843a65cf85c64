"""TrainExamples + TrainConfig -> LoRA checkpoints (`out_dir/epoch-N`), trained with MLX (mlx-lm) on the HF base.

The same run as `backends/torch_trainer.py`, written on MLX: the same token layout (its `encode_pairs`), the
same objectives, AdamW settings, learning-rate schedule, clipping, shuffling and per-epoch checkpoints. LoRA
comes from mlx-lm's tuner on the same projections of the same last blocks (`TrainConfig.lora_layers`), with mlx's `scale` = alpha / r (what PEFT
applies). mlx-lm has no DPO, so the loss is written here; the reference is the same model with every LoRA
scale set to 0 (the update is multiplied by zero: exactly the base), forwarded once per pair and reused.
Each `epoch-N` is a PEFT folder (what the GGUF exporter and torch read) holding the mlx-lm adapter in `mlx/`.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from backends.mlx_export import (
    mlx_config,
    mlx_to_peft_weights,
    peft_config,
    write_mlx_files,
    write_peft_files,
)
from backends.torch_trainer import ADAM_BETAS, ADAM_EPS, IGNORE, Encoded, chunk_pairs, encode_pairs
from uno_local.config import TrainConfig
from uno_local.errors import AdapterError, TrainingError
from uno_local.training import (
    ReferenceCache,
    TrainExample,
    TrainProgress,
    TrainResult,
    epoch_dir,
    lora_layer_indices,
    lr_factor,
    run_epochs,
    steps_per_epoch,
    validate_inputs,
)

MLX_SUBDIR = "mlx"  # inside each epoch folder: the adapter as mlx-lm saves and loads it

Pairs = list[tuple[Encoded, Encoded | None]]


def rope_theta_of(base_dir: Path) -> float:
    """The RoPE base the HF folder declares, wherever transformers put it."""
    config = json.loads((Path(base_dir) / "config.json").read_text(encoding="utf-8"))
    theta = (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta"))
    if theta is None:
        raise TrainingError(f"{base_dir}/config.json has no RoPE base (rope_theta); derive the folder again.")
    return float(theta)


def load_mlx_model(base_dir: Path):
    """The HF folder as an mlx-lm model, with the RoPE base passed explicitly and checked.

    transformers 5 nests rope_theta under rope_parameters; mlx-lm reads only the top level and would
    silently use 10000 (SmolLM2 needs 100000), so we hand it the value and verify what it built.
    """
    from mlx_lm.utils import load_model

    theta = rope_theta_of(base_dir)
    model, _ = load_model(Path(base_dir), model_config={"rope_theta": theta})
    used = getattr(model.args, "rope_theta", theta)
    if not math.isclose(used, theta, rel_tol=1e-6):
        raise TrainingError(f"mlx-lm built the model with RoPE base {used}, not {theta}; upgrade mlx-lm.")
    return model


def lora_keys(block, targets: list[str]) -> list[str]:
    """Paths inside one transformer block of the Linear layers named in `targets` (e.g. self_attn.q_proj);
    a projection the model fuses (phi3's qkv_proj, gate_up_proj) stands in for its parts."""
    import mlx.nn as nn

    from backends.hf_base import lora_targets

    targets = lora_targets(targets, {n.split(".")[-1] for n, _ in block.named_modules()})
    keys = [n for n, m in block.named_modules() if n.split(".")[-1] in targets and isinstance(m, nn.Linear)]
    missing = set(targets) - {k.split(".")[-1] for k in keys}
    if missing:
        raise TrainingError(f"The model has no {', '.join(sorted(missing))} layer; fix train.target_modules.")
    return sorted(keys)


def add_lora(
    model, r: int, alpha: float, dropout: float, targets: list[str], num_layers: int = 0
) -> list[str]:
    """Freeze the base and put mlx-lm LoRA layers on `targets` in the last `num_layers` blocks (0: every
    block); returns their keys."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    keys = lora_keys(model.layers[0], targets)
    params = {"rank": r, "scale": alpha / r, "dropout": dropout, "keys": keys}
    linear_to_lora_layers(model, len(lora_layer_indices(len(model.layers), num_layers)), params)
    return keys


@contextmanager
def adapter_off(model) -> Iterator[None]:
    """Run the model as its base: every LoRA update is scaled by 0 (the DPO reference, no second copy)."""
    from mlx_lm.tuner.lora import LoRALinear

    layers = [m for _, m in model.named_modules() if isinstance(m, LoRALinear)]
    scales = [m.scale for m in layers]
    for m in layers:
        m.scale = 0.0
    try:
        yield
    finally:
        for m, s in zip(layers, scales, strict=True):
            m.scale = s


def _head(model, hidden):
    """Vocabulary logits from final hidden states (tied embeddings or a separate head)."""
    head = getattr(model, "lm_head", None)
    return head(hidden) if head is not None else model.model.embed_tokens.as_linear(hidden)


def sequence_logps(model, seqs: list[Encoded], pad_id: int):
    """(summed answer log-prob per sequence as an mx array, the same under the sequences' NLL weights,
    answer token counts, tokens forwarded).

    Right padding needs no mask here: attention is causal, so padding after a sequence never reaches it.
    """
    import mlx.core as mx
    import mlx.nn as nn

    width = max(len(s.input_ids) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int32)
    labels = np.full((len(seqs), width), IGNORE, dtype=np.int64)
    weights = np.ones((len(seqs), width), dtype=np.float32)
    for i, s in enumerate(seqs):
        ids[i, : len(s.input_ids)] = s.input_ids
        labels[i, : len(s.labels)] = s.labels
        if s.weights is not None:
            weights[i, s.n_prompt : len(s.input_ids)] = s.weights
    keep = min(width, width - min(s.n_prompt for s in seqs) + 1)  # head only where answers are predicted
    hidden = model.model(mx.array(ids))[:, width - keep : -1]
    targets = labels[:, width - keep + 1 :]
    mask = targets != IGNORE
    nll = nn.losses.cross_entropy(
        _head(model, hidden), mx.array(np.where(mask, targets, 0)), reduction="none"
    )
    logps = -(nll * mx.array(mask)).sum(axis=1)
    weighted = -(nll * mx.array(mask * weights[:, width - keep + 1 :])).sum(axis=1)
    return logps, weighted, mask.sum(axis=1), sum(len(s.input_ids) for s in seqs)


class ReferenceLogps(ReferenceCache):
    """The reference cache, forwarding missing pairs with every LoRA scaled to 0."""

    def get(self, model, keyed: list[tuple[int, Encoded, Encoded]], pad_id: int) -> np.ndarray:
        """Reference log-probs of the chosen answers, then of the rejected ones, in the order of `keyed`."""
        missing = [keyed[i] for i in self.missing([k for k, _, _ in keyed])]
        if missing:  # forwarded outside the gradient transform: a constant to the loss
            with adapter_off(model):
                ref, _, counts, _ = sequence_logps(
                    model, [c for _, c, _ in missing] + [r for _, _, r in missing], pad_id
                )
                ref, counts = np.array(ref), np.array(counts)
            self.store([k for k, _, _ in missing], ref.tolist(), counts.tolist())
        return np.array(self.lookup([k for k, _, _ in keyed]), dtype=np.float32)


def chunk_loss(
    model,
    pairs: Pairs,
    ref: np.ndarray | None,
    config: TrainConfig,
    objective: str,
    pad_id: int,
    n_pairs: int,
    n_answer: int,
):
    """This chunk's exact share of the micro-batch loss: (loss, reward-margin sum) as mx arrays."""
    import mlx.core as mx
    import mlx.nn as nn

    chosen = [c for c, _ in pairs]
    pref = [i for i, (_, r) in enumerate(pairs) if r is not None] if objective == "preference" else []
    logps, weighted, _, _ = sequence_logps(model, chosen + [pairs[i][1] for i in pref], pad_id)
    n = len(chosen)
    loss = -weighted[:n].sum() / n_answer
    margin_sum = mx.array(0.0)
    if objective == "preference":
        dpo_sum = mx.array((n - len(pref)) * math.log(2.0))  # SFT pairs: a constant with zero gradient
        if pref:
            p = len(pref)
            ref_mx = mx.array(ref)
            margins = config.dpo_beta * ((logps[mx.array(pref)] - ref_mx[:p]) - (logps[n:] - ref_mx[p:]))
            dpo_sum = dpo_sum - nn.log_sigmoid(margins).sum()
            margin_sum = mx.stop_gradient(margins.sum())
        loss = config.dpo_weight * dpo_sum / n_pairs + config.nll_weight * loss
    return loss, margin_sum


def micro_batch_grads(
    model,
    pairs: Pairs,
    config: TrainConfig,
    objective: str,
    pad_id: int,
    scale: float,
    reference: ReferenceLogps,
    keys: list[int],
):
    """Gradients of `scale` x the micro-batch loss over the LoRA weights, chunk by chunk with exact weights.

    Returns (gradient tree, loss, margin sum, preference pairs, tokens forwarded).
    """
    import mlx.core as mx
    import mlx.nn as nn

    n_pairs = len(pairs)
    n_answer = sum(len(c.input_ids) - c.n_prompt for c, _ in pairs)
    grads, loss_value, margin_total, n_pref, tokens = None, 0.0, 0.0, 0, 0
    for chunk in chunk_pairs(pairs, config.max_forward_tokens):
        sub = [pairs[i] for i in chunk]
        pref = [i for i in chunk if pairs[i][1] is not None] if objective == "preference" else []
        keyed = [(keys[i], pairs[i][0], pairs[i][1]) for i in pref]
        ref = reference.get(model, keyed, pad_id) if pref else None

        def objective_fn(sub=sub, ref=ref):
            loss, margin = chunk_loss(model, sub, ref, config, objective, pad_id, n_pairs, n_answer)
            return loss * scale, loss, margin

        (_, loss, margin), g = nn.value_and_grad(model, objective_fn)()
        grads = g if grads is None else _add(grads, g)
        mx.eval(grads, loss, margin)  # one chunk's graph at a time: bounded memory
        loss_value += float(loss)
        margin_total += float(margin)
        n_pref += len(pref)
        tokens += sum(len(c.input_ids) + (len(r.input_ids) if r is not None else 0) for c, r in sub)
    return grads, loss_value, margin_total, n_pref, tokens


def make_optimizer(config: TrainConfig):
    """AdamW as torch's: the same betas, eps and decoupled weight decay, with bias correction (mlx's default
    is off). The trainer sets `learning_rate` before every update from `lr_factor`."""
    import mlx.optimizers as optim

    return optim.AdamW(
        config.learning_rate, list(ADAM_BETAS), ADAM_EPS, config.weight_decay, bias_correction=True
    )


def optimizer_step(optimizer, model, grads, config: TrainConfig, step: int, total: int, warmup: int) -> None:
    """Clip the gradients to max_grad_norm, set step `step`'s (0-based) learning rate, update the weights."""
    import mlx.core as mx
    import mlx.optimizers as optim

    grads, _ = optim.clip_grad_norm(grads, config.max_grad_norm)
    optimizer.learning_rate = config.learning_rate * lr_factor(step, total, warmup, config.schedule)
    optimizer.update(model, grads)
    mx.eval(model.trainable_parameters(), optimizer.state)


def accumulate(
    model,
    enc: Pairs,
    group: list[list[int]],
    config: TrainConfig,
    objective: str,
    pad_id: int,
    reference: ReferenceLogps,
):
    """Summed gradients of one optimizer step's micro-batches; (grads, mean loss, mean margin, tokens)."""
    grads, loss_sum, margin_sum, n_pref, tokens = None, 0.0, 0.0, 0, 0
    for batch in group:
        g, loss, m_sum, m_n, n_tokens = micro_batch_grads(
            model, [enc[i] for i in batch], config, objective, pad_id, 1.0 / len(group), reference, batch
        )
        grads = g if grads is None else _add(grads, g)
        loss_sum, margin_sum = loss_sum + loss, margin_sum + m_sum
        n_pref, tokens = n_pref + m_n, tokens + n_tokens
    return grads, loss_sum / len(group), (margin_sum / n_pref if n_pref else 0.0), tokens


def flat_arrays(tree) -> dict[str, np.ndarray]:
    """A tree of LoRA arrays (weights or their gradients) under mlx-lm's names, as numpy."""
    from mlx.utils import tree_flatten

    return {k: np.array(v) for k, v in tree_flatten(tree)}


def apply_adapter(model, folder: Path) -> None:
    """Put a saved adapter on a plain mlx model: an mlx-lm folder, or a PEFT folder (transposed in)."""
    import mlx.core as mx
    from mlx_lm.tuner.utils import load_adapters

    from backends.mlx_export import peft_to_mlx_weights

    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    if "lora_parameters" in config:
        load_adapters(model, str(folder))
        return
    from safetensors.numpy import load_file

    r, alpha = int(config["r"]), float(config["lora_alpha"])
    n = len(model.layers)
    layers = config.get("layers_to_transform") or list(range(n))
    if sorted(layers) != list(range(n - len(layers), n)):
        raise AdapterError(
            f"{folder}: mlx-lm puts LoRA on the last layers only, not on layers {layers}; "
            "use the torch backend (--backend torch) for this adapter."
        )
    add_lora(model, r, alpha, 0.0, list(config["target_modules"]), len(layers))
    weights = peft_to_mlx_weights(load_file(folder / "adapter_model.safetensors"))
    model.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=False)


def last_logits(model, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(base, adapted) next-token logits at each prompt's last token, as `backends.parity` compares them."""
    import mlx.core as mx

    width = max(map(len, ids))
    x = np.zeros((len(ids), width), dtype=np.int32)
    for i, seq in enumerate(ids):
        x[i, : len(seq)] = seq
    rows, last = mx.arange(len(ids)), mx.array([len(s) - 1 for s in ids])
    model.eval()
    adapted = np.array(model(mx.array(x))[rows, last])
    with adapter_off(model):
        plain = np.array(model(mx.array(x))[rows, last])
    return plain, adapted


def mlx_logits(hf_base_dir: Path, adapter_dir: Path, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(base, adapted) last-position logits from MLX with the adapter in `adapter_dir` (mlx-lm or PEFT)."""
    model = load_mlx_model(hf_base_dir)
    apply_adapter(model, adapter_dir)
    return last_logits(model, ids)


class MlxTrainer:
    """The `Trainer` on MLX + mlx-lm; `base_dir` is the HF folder made by `backends.hf_base.ensure_hf_base`."""

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)

    @classmethod
    def from_gguf(cls, gguf_path: Path, cache_dir: Path) -> MlxTrainer:
        import contextlib
        import io

        from backends.hf_base import ensure_hf_base

        with contextlib.redirect_stderr(io.StringIO()):  # the GGUF dequantizer's own progress bar
            return cls(ensure_hf_base(gguf_path, cache_dir))

    def load(self, config: TrainConfig):
        """(tokenizer, fresh LoRA model, LoRA keys) for one run, seeded so the LoRA init repeats."""
        import mlx.core as mx
        from transformers import AutoTokenizer

        from backends.hf_base import quiet_transformers

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        model = load_mlx_model(self.base_dir)
        mx.random.seed(config.seed)
        keys = add_lora(
            model,
            config.lora_r,
            config.lora_alpha,
            config.lora_dropout,
            list(config.target_modules),
            config.lora_layers,
        )
        return tokenizer, model, keys

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
        import mlx.core as mx

        validate_inputs(examples, config, objective)
        tokenizer, model, keys = self.load(config)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        enc = encode_pairs(tokenizer, examples, config, objective)
        reference = ReferenceLogps()
        optimizer = make_optimizer(config)
        total = steps_per_epoch(len(enc), config.batch_size, config.grad_accum) * config.epochs
        warmup = int(config.warmup_ratio * total)

        def step(group: list[list[int]], index: int, total: int) -> tuple[float, float, int]:
            grads, loss, margin, tokens = accumulate(model, enc, group, config, objective, pad_id, reference)
            optimizer_step(optimizer, model, grads, config, index, total, warmup)
            return loss, margin, tokens

        def save(epoch: int, loss: float) -> Path:
            return self._save(model, keys, out_dir, epoch, config, objective, examples, loss)

        out_dir.mkdir(parents=True, exist_ok=True)
        model.train()
        result = run_epochs(len(enc), config, step, save, on_progress, should_stop)
        result.metrics.update(objective=objective, device=f"mlx:{mx.default_device().type.name}")
        result.metrics.update(reference.logp_means())
        return result

    def _save(
        self,
        model,
        keys: list[str],
        out_dir: Path,
        epoch: int,
        config: TrainConfig,
        objective: str,
        examples: list,
        loss: float,
    ) -> Path:
        """Write the epoch's PEFT folder with the mlx-lm adapter in `mlx/` (temp + rename) and its provenance."""
        final = epoch_dir(out_dir, epoch)
        tmp = out_dir / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        weights = flat_arrays(model.trainable_parameters())
        r, alpha = config.lora_r, config.lora_alpha
        layers = lora_layer_indices(len(model.layers), config.lora_layers)
        write_mlx_files(
            weights, mlx_config(r, alpha / r, config.lora_dropout, keys, len(layers)), tmp / MLX_SUBDIR
        )
        peft_weights = mlx_to_peft_weights(weights)
        targets = list(config.target_modules)
        peft_cfg = peft_config(r, alpha, config.lora_dropout, targets, str(self.base_dir), layers)
        write_peft_files(peft_weights, peft_cfg, tmp)
        note = {
            "epoch": epoch,
            "objective": objective,
            "backend": "mlx",
            "mean_loss": loss,
            "source_ids": sorted({i for ex in examples for i in ex.source_ids}),
            "config": asdict(config),
        }
        (tmp / "uno_train.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final


def _add(a, b):
    from mlx.utils import tree_map

    return tree_map(lambda x, y: x + y, a, b)
