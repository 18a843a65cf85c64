"""Settings: one small dataclass per concern, loaded from `uno.toml` in the user dir.

Every key has a default that works on the embedded model; `docs/config.md` lists them all
(a test keeps it in step). Command-line flags override the file.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uno_local.errors import ConfigError


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a help text (shown in docs/config.md)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    path: str = _f(
        "",
        "Chat model: a GGUF file, or a name `uno models` lists; empty means the embedded SmolLM2-135M-Instruct Q4_1.",
    )
    folders: list[str] = _f([], "More folders `uno models` and model names look in for GGUF files.")
    chat_format: str = _f(
        "", "Chat format for a GGUF without a chat template (chatml, gemma, ...); empty: by architecture."
    )
    n_ctx: int = _f(4096, "Context window in tokens given to llama.cpp.")
    n_threads: int = _f(0, "CPU threads for generation; 0 means every CPU core.")
    n_batch: int = _f(512, "Prompt-processing batch size for llama.cpp.")


@dataclass
class GenerationConfig:
    temperature: float = _f(0.2, "Sampling temperature for chat; 0 is greedy.")
    top_p: float = _f(0.9, "Nucleus sampling threshold.")
    max_tokens: int = _f(512, "Longest answer in tokens.")
    seed: int = _f(-1, "Sampling seed; -1 picks a new one per answer.")
    system_prompt: str = _f("", "System prompt; empty keeps the model template's own default.")


@dataclass
class TrainConfig:
    backend: str = _f("auto", "Trainer backend: auto, torch or mlx (auto: mlx on Apple silicon, else torch).")
    device: str = _f("auto", "Torch device: auto (cuda, then mps, then cpu), cuda, mps or cpu.")
    lora_r: int = _f(8, "LoRA rank.")
    lora_alpha: float = _f(16.0, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    target_modules: list = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Projections that get LoRA weights.",
    )
    lora_layers: int = _f(
        0,
        "LoRA on the last N decoder layers only (as mlx-lm's --num-layers); 0 = every layer. Fewer layers "
        "train faster and cost llama.cpp less per generated token, but learn less: docs/benchmarks.md.",
    )
    learning_rate: float = _f(5e-4, "Peak learning rate (AdamW).")
    schedule: str = _f("cosine", "Learning-rate schedule: cosine, linear or constant.")
    warmup_ratio: float = _f(0.0, "Share of steps spent warming up.")
    epochs: int = _f(3, "Passes over the training pairs; a checkpoint is kept per epoch.")
    min_steps: int = _f(
        24, "Fewest optimizer steps per adapter: a small cluster gets more epochs to reach it."
    )
    batch_size: int = _f(4, "Pairs per optimizer micro-batch.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step.")
    max_prompt_tokens: int = _f(256, "Prompt tokens kept (the last ones) per example.")
    max_answer_tokens: int = _f(192, "Answer tokens kept per chosen/rejected answer.")
    dpo_beta: float = _f(0.1, "DPO temperature beta.")
    dpo_weight: float = _f(0.5, "Weight of the DPO (sigmoid) term.")
    nll_weight: float = _f(0.5, "Weight of the NLL term on the chosen answer.")
    weight_decay: float = _f(1e-4, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    seed: int = _f(42, "Training seed.")
    threads: int = _f(0, "Torch CPU threads; 0 leaves torch's default.")
    precision: str = _f(
        "fp32",
        "Torch forward precision: fp32, bf16 (autocast; LoRA weights and optimizer stay fp32) or auto (bf16 "
        "where the hardware computes it natively: CUDA with bf16, or a CPU with AVX512-BF16/AMX).",
    )
    max_forward_tokens: int = _f(
        256, "Padded tokens per forward pass (bounds activation memory; the loss is exact)."
    )


@dataclass
class EmbedderConfig:
    path: str = _f("", "sentence-transformers model folder; empty means the embedded all-MiniLM-L6-v2.")


@dataclass
class UnoConfig:
    mode: str = _f("uno", "Routing mode: uno (Expert, Reflective, base) or uno-single (Expert or base).")
    ward_threshold: float = _f(
        0.0, "Ward distance that cuts the cluster tree; 0 = auto (the widest gap in merge heights, else 2.5)."
    )
    min_cluster_size: int = _f(6, "Clusters smaller than this merge into the nearest or stay on the base.")
    unseen_distance: float = _f(
        0.64, "Cosine distance to the nearest centroid beyond which a query is unseen (base model)."
    )
    gap_threshold: float = _f(0.95, "Mean minimum rule novelty at or above which a cluster is high-gap.")
    win_rate: float = _f(0.6, "Held-out win rate an adapter needs to ship.")
    judged_epochs: int = _f(
        4,
        "Expert checkpoints judged on the held-out logs: evenly spaced, always the last; 0 judges every one.",
    )
    min_heldout: int = _f(3, "Fewest held-out logs a cluster needs for validation.")
    heldout_share: float = _f(0.2, "Share of a cluster's logs held out for validation.")
    revisions: int = _f(3, "Revision candidates per log when the user gave no correction.")
    critic_max_rounds: int = _f(1, "Critique-revise rounds on the Reflective path.")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    uno: UnoConfig = field(default_factory=UnoConfig)


def config_from_dict(data: dict[str, Any], source: str = "uno.toml") -> Config:
    """Build a Config from parsed TOML, naming the first unknown or mistyped key."""
    config = Config()
    for section_name, values in data.items():
        if not hasattr(config, section_name) or not isinstance(values, dict):
            raise ConfigError(f"{source}: unknown section [{section_name}]; see docs/config.md for the keys.")
        section = getattr(config, section_name)
        fields = {f.name: f for f in dataclasses.fields(section)}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(
                    f"{source}: unknown key {section_name}.{key}; see docs/config.md for the keys."
                )
            setattr(section, key, _coerce(value, getattr(section, key), f"{section_name}.{key}", source))
    return config


def _coerce(value: Any, default: Any, name: str, source: str) -> Any:
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: {name} must be {expected.__name__}, got {value!r}.")


def load_config(path: Path | None = None) -> Config:
    """Read `uno.toml` (defaults when the file does not exist)."""
    if path is None:
        from uno_local.paths import config_path

        path = config_path()
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or delete it.") from exc
    return config_from_dict(data, source=str(path))


def iter_keys(config: Config | None = None):
    """Yield (dotted key, default, help) for every setting: the source of docs/config.md."""
    config = config or Config()
    for section in dataclasses.fields(config):
        for f in dataclasses.fields(getattr(config, section.name)):
            yield (
                f"{section.name}.{f.name}",
                getattr(getattr(config, section.name), f.name),
                f.metadata["help"],
            )


def config_to_toml(config: Config) -> str:
    """`config` as uno.toml text, every key spelled out (`load_config` reads it back unchanged)."""
    lines: list[str] = []
    for section in dataclasses.fields(config):
        lines.append(f"[{section.name}]")
        for f in dataclasses.fields(getattr(config, section.name)):
            # JSON's strings, numbers, booleans and lists of strings are valid TOML values
            lines.append(f"{f.name} = {json.dumps(getattr(getattr(config, section.name), f.name))}")
        lines.append("")
    return "\n".join(lines)
