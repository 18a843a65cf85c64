"""Settings: one small dataclass per concern, loaded from `uno.toml` in the user dir.

Every key has a default that works on the embedded model, a type and, where it matters, a range or
a set of allowed values, declared once in its annotation (`annotated_types`). Loading validates
each key against its annotation with pydantic (imported only when there is something to check) and
refuses a bad one in one sentence naming the key and what is allowed. `docs/config.md` lists every
key with its default and what it allows (a test keeps it in step). Command-line flags override the
file and are checked the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MinLen, Predicate

from uno_local.errors import ConfigError


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a help text (shown in docs/config.md)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _empty_or_folder(value: str) -> bool:
    """empty (the embedded model) or an existing folder"""
    return not value or Path(value).expanduser().is_dir()


Count = Annotated[int, Ge(0)]
AtLeastOne = Annotated[int, Ge(1)]
Positive = Annotated[float, Gt(0)]
NonNegative = Annotated[float, Ge(0)]
Share = Annotated[float, Ge(0), Le(1)]
# llama.cpp's DRY sampler ("don't repeat yourself"): a token that would extend a stretch of the answer
# already seen at least DRY_ALLOWED_LENGTH tokens long loses multiplier * base^(length - allowed) of its
# logit, over the answer's last DRY_LAST_N tokens (`generation.dry_multiplier` turns it on; 0.8 with
# base 1.75 are the values its author recommends).
DRY_BASE = 1.75
DRY_ALLOWED_LENGTH = 2
DRY_LAST_N = 1024
EMBEDDED_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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
    n_ctx: Annotated[int, Ge(256)] = _f(4096, "Context window in tokens given to llama.cpp.")
    n_threads: Count = _f(0, "CPU threads for generation; 0 means every CPU core.")
    n_batch: AtLeastOne = _f(512, "Prompt-processing batch size for llama.cpp.")
    n_parallel: Annotated[int, Ge(1), Le(16)] = _f(
        1,
        "Answers decoded together by batched generation (retrain, eval, ask --batch); 1 = one at a time. "
        "On a 2-core CPU batching measured no faster (docs/benchmarks.md); raise it on a GPU.",
    )


@dataclass
class GenerationConfig:
    temperature: NonNegative = _f(0.2, "Sampling temperature for chat; 0 is greedy.")
    top_p: Share = _f(0.9, "Nucleus sampling threshold.")
    max_tokens: AtLeastOne = _f(512, "Longest answer in tokens.")
    seed: Annotated[int, Ge(-1), Le(2**32 - 1)] = _f(-1, "Sampling seed; -1 picks a new one per answer.")
    dry_multiplier: NonNegative = _f(
        0.0,
        "Penalty on a token that would repeat an earlier stretch of the answer (llama.cpp's DRY sampler, "
        "with no sequence breakers: a repeated line counts); 0 = off, 0.8 is the usual value. Measured at "
        "0.8 (docs/eval.md): no looping answers and a quarter of the repeated 3-grams, but adapters that "
        "sign off twice write a mangled second sign-off; opt-in until the UNO-loop eval passes with it.",
    )
    system_prompt: str = _f("", "System prompt; empty keeps the model template's own default.")


@dataclass
class TrainConfig:
    backend: Literal["auto", "torch", "mlx"] = _f(
        "auto", "Trainer backend: auto, torch or mlx (auto: mlx on Apple silicon, else torch)."
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = _f(
        "auto", "Torch device: auto (cuda, then mps, then cpu), cuda, mps or cpu."
    )
    lora_r: AtLeastOne = _f(8, "LoRA rank.")
    lora_alpha: Positive = _f(16.0, "LoRA alpha (scale = alpha / r).")
    lora_dropout: Annotated[float, Ge(0), Lt(1)] = _f(0.05, "LoRA dropout.")
    target_modules: Annotated[list[str], MinLen(1)] = _f(
        EMBEDDED_TARGETS,
        "Projections that get LoRA weights.",
    )
    lora_layers: Count = _f(
        0,
        "LoRA on the last N decoder layers only (as mlx-lm's --num-layers); 0 = every layer. Fewer layers "
        "train faster and cost llama.cpp less per generated token, but learn less: docs/benchmarks.md.",
    )
    learning_rate: Positive = _f(
        5e-4,
        "Peak learning rate (AdamW). 1e-3 taught sign-off habits from full-length answers better, and broke "
        "a numbered-list habit: docs/eval.md, session 29.",
    )
    schedule: Literal["cosine", "linear", "constant"] = _f(
        "cosine", "Learning-rate schedule: cosine, linear or constant."
    )
    warmup_ratio: Annotated[float, Ge(0), Lt(1)] = _f(0.0, "Share of steps spent warming up.")
    epochs: AtLeastOne = _f(3, "Passes over the training pairs; a checkpoint is kept per epoch.")
    min_steps: Count = _f(
        24, "Fewest optimizer steps per adapter: a small cluster gets more epochs to reach it."
    )
    batch_size: AtLeastOne = _f(4, "Pairs per optimizer micro-batch.")
    grad_accum: AtLeastOne = _f(1, "Micro-batches per optimizer step.")
    max_prompt_tokens: AtLeastOne = _f(256, "Prompt tokens kept (the last ones) per example.")
    max_answer_tokens: AtLeastOne = _f(192, "Answer tokens kept per chosen/rejected answer.")
    dpo_beta: Positive = _f(0.1, "DPO temperature beta.")
    dpo_weight: NonNegative = _f(0.5, "Weight of the DPO (sigmoid) term.")
    nll_weight: NonNegative = _f(0.5, "Weight of the NLL term on the chosen answer.")
    habit_share: Annotated[float, Ge(0), Lt(1)] = _f(
        0.0,
        "Where the chosen answer is the rejected one with an ending appended (a sign-off, a few percent of "
        "a long answer's tokens), the least share of its NLL that ending carries; the answer's total weight "
        "stays the same. 0 = off (every token weighs the same): at 0.5, sign-off answers collapsed to the "
        "sign-off alone more often (docs/eval.md, session 30).",
    )
    weight_decay: NonNegative = _f(1e-4, "AdamW weight decay.")
    max_grad_norm: Positive = _f(1.0, "Gradient clipping norm.")
    seed: Count = _f(42, "Training seed.")
    threads: Count = _f(0, "Torch CPU threads; 0 leaves torch's default.")
    precision: Literal["fp32", "bf16", "auto"] = _f(
        "auto",
        "Torch forward precision: fp32, bf16 (autocast; LoRA weights and optimizer stay fp32) or auto (bf16 "
        "where the hardware computes it natively: CUDA with bf16, or a CPU with AVX512-BF16/AMX; else fp32).",
    )
    max_forward_tokens: AtLeastOne = _f(
        256, "Padded tokens per forward pass (bounds activation memory; the loss is exact)."
    )


@dataclass
class EmbedderConfig:
    path: Annotated[str, Predicate(_empty_or_folder)] = _f(
        "", "sentence-transformers model folder; empty means the embedded all-MiniLM-L6-v2."
    )


@dataclass
class UnoConfig:
    mode: Literal["uno", "uno-single"] = _f(
        "uno", "Routing mode: uno (Expert, Reflective, base) or uno-single (Expert or base)."
    )
    ward_threshold: NonNegative = _f(
        0.0, "Ward distance that cuts the cluster tree; 0 = auto (the widest gap in merge heights, else 2.5)."
    )
    min_cluster_size: AtLeastOne = _f(
        6, "Clusters smaller than this merge into the nearest or stay on the base."
    )
    unseen_distance: Annotated[float, Ge(0), Le(2)] = _f(
        0.64, "Cosine distance to the nearest centroid beyond which a query is unseen (base model)."
    )
    cluster_radius: bool = _f(
        False,
        "Route by a radius per cluster, learned from its own spread (within unseen_distance), instead of "
        "the one unseen_distance: measured, it raised precision but not recall (docs/thresholds.md); opt-in "
        "until the UNO-loop eval is measured with it.",
    )
    repetition_margin: Share = _f(
        1.0,
        "An Expert epoch whose answers to questions it never trained on (its held-out logs and up to 8 of "
        "your other questions) repeat on average more than this share of 3-grams above the base's never "
        "ships; 1 = off. An epoch with more looping answers than the base never ships, whatever this is. "
        "Off by default: at 0.05 (the issue's bar) it refused the example scenario's gardening epochs 6-12 "
        "and the epoch 3 it shipped had not learned the habit (docs/eval.md).",
    )
    rule_consistency: Annotated[float, Ge(0), Le(2)] = _f(
        0.0,
        "A log whose rules lie farther than this cosine distance from the rest of its cluster's rules (noisy "
        "feedback such as 'Use ALL CAPS from now on.' in a topic with another habit) trains nothing and is not "
        "held out; 0 = off. 0.5 is the calibrated cut (docs/thresholds.md); opt-in until the UNO-loop eval "
        "passes with it.",
    )
    gap_threshold: Share = _f(0.95, "Mean minimum rule novelty at or above which a cluster is high-gap.")
    win_rate: Share = _f(0.6, "Held-out win rate an adapter needs to ship.")
    judged_epochs: Count = _f(
        4,
        "Expert checkpoints judged on the held-out logs: evenly spaced, always the last; 0 judges every one.",
    )
    min_heldout: AtLeastOne = _f(3, "Fewest held-out logs a cluster needs for validation.")
    heldout_share: Annotated[float, Gt(0), Lt(1)] = _f(
        0.2, "Share of a cluster's logs held out for validation."
    )
    revisions: Count = _f(3, "Revision candidates per log when the user gave no correction.")
    practice_questions: Count = _f(
        12,
        "Lists of a cluster's questions the base model continues with a new one for its Expert to practise "
        "on (and a third as many of its questions typed tersely), each answered and edited as your "
        "corrections edit answers, when most of them make the same edit (a sign-off or an opening added, "
        "lowercase, a list); 0 = off. 12 took travel-format from 40% to 100%, tech-support from 17% to 61%, "
        "money-matters from 50% to 78% and pet-care from 78% to 83%, and kept the example scenario at 93%; "
        "the train stage takes 1.5-2x as long (docs/eval.md, sessions 33-35).",
    )
    critic_max_rounds: Count = _f(1, "Critique-revise rounds on the Reflective path.")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    uno: UnoConfig = field(default_factory=UnoConfig)


# section name -> its dataclass, in Config's order
SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Config)}
# The command-line flags that override a key, named in their errors.
FLAGS = {"--model": "model.path", "--threads": "model.n_threads", "--ctx": "model.n_ctx"}


def config_from_dict(data: dict[str, Any], source: str = "uno.toml") -> Config:
    """Build a Config from parsed TOML; the first unknown or invalid key is refused in one sentence."""
    sections = {}
    for name, values in data.items():
        if name in SECTIONS and not isinstance(values, dict):
            raise ConfigError(
                f"{source}: {name} must be a table, [{name}] with its keys below it; got {_shown(values)}."
            )
        if name not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{name}]; the sections are {', '.join(SECTIONS)}.")
        sections[name] = _checked(name, values, source)
    return Config(**sections)


def with_override(config: Config, key: str, value: Any, source: str) -> Config:
    """A copy of `config` with the dotted `key` set to `value`, checked like a key in uno.toml."""
    name, field_name = key.split(".", 1)
    values = {**dataclasses.asdict(getattr(config, name)), field_name: value}
    return dataclasses.replace(config, **{name: _checked(name, values, source)})


def load_config(path: Path | None = None) -> Config:
    """Read and check `uno.toml` (defaults when the file does not exist)."""
    if path is None:
        from uno_local.paths import config_path

        path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except IsADirectoryError as exc:
        raise ConfigError(
            f"{path} is a folder, not a settings file; remove it or put a TOML file there."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or delete it.") from exc
    except OSError as exc:
        raise ConfigError(f"Cannot read {path} ({exc.strerror}); check its permissions.") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or delete it.") from exc
    return config_from_dict(data, source=str(path))


def _checked(section: str, values: dict[str, Any], source: str) -> Any:
    """`values` as the section's dataclass, each key checked against its annotation by pydantic."""
    from pydantic import ValidationError

    cls = SECTIONS[section]
    try:
        checked = _validator(cls)(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = error["loc"][0] if error["loc"] else "?"
        if error["type"] == "unexpected_keyword_argument":
            keys = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{source}: unknown key {section}.{key}; [{section}] has {keys}.") from None
        value = values.get(key, error["input"])
        raise ConfigError(
            f"{source}: {section}.{key} must be {allowed(cls, str(key))}; got {_shown(value)}."
        ) from None
    return cls(**{f.name: getattr(checked, f.name) for f in dataclasses.fields(cls)})


@functools.cache
def _validator(cls: type) -> type:
    """A pydantic twin of the dataclass `cls` that checks each field on construction: strict types
    (no "8" for 8, no true for 1), finite numbers, no unknown keys."""
    from pydantic import ConfigDict
    from pydantic.dataclasses import dataclass as pydantic_dataclass

    return pydantic_dataclass(cls, config=ConfigDict(strict=True, extra="forbid", allow_inf_nan=False))


def _shown(value: Any) -> str:
    """`value` for an error message: TOML's true/false, control characters escaped, cut when long."""
    text = json.dumps(value) if isinstance(value, bool) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_BOUNDS = {Ge: ("ge", "at least"), Gt: ("gt", "above"), Le: ("le", "at most"), Lt: ("lt", "below")}
_TYPES = {int: "int", float: "a finite number", str: "str", bool: "true or false", list[str]: "a list of str"}


def allowed(cls: type, name: str) -> str:
    """What the field `name` of the settings dataclass `cls` accepts, in words (from its annotation)."""
    hint = typing.get_type_hints(cls, include_extras=True)[name]
    base, *extras = typing.get_args(hint) if typing.get_origin(hint) is Annotated else (hint,)
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(json.dumps(v) for v in typing.get_args(base))
    limits = {type(extra): extra for extra in extras}
    words = [_TYPES[base]]
    if Ge in limits and Le in limits:
        words.append(f"from {_number(limits[Ge].ge)} to {_number(limits[Le].le)}")
    elif bounds := [
        f"{word} {_number(getattr(limits[kind], attr))}"
        for kind, (attr, word) in _BOUNDS.items()
        if kind in limits
    ]:
        words.append(" and ".join(bounds))
    words += ["not empty" for extra in extras if isinstance(extra, MinLen)]
    words += [extra.func.__doc__ for extra in extras if isinstance(extra, Predicate)]
    return ", ".join(words)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def iter_keys(config: Config | None = None):
    """Yield (dotted key, default, allowed, help) for every setting: the source of docs/config.md."""
    config = config or Config()
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield (
                f"{section}.{f.name}",
                getattr(getattr(config, section), f.name),
                allowed(cls, f.name),
                f.metadata["help"],
            )


def config_to_toml(config: Config) -> str:
    """`config` as uno.toml text, every key spelled out (`load_config` reads it back unchanged)."""
    lines: list[str] = []
    for section in SECTIONS:
        lines.append(f"[{section}]")
        for f in dataclasses.fields(getattr(config, section)):
            # JSON's strings, numbers, booleans and lists of strings are valid TOML values
            lines.append(f"{f.name} = {json.dumps(getattr(getattr(config, section), f.name))}")
        lines.append("")
    return "\n".join(lines)
