"""The narrow interface between the app and a chat runtime (llama.cpp in `backends/`).

`Runtime.stream(messages, settings, adapter=...)` yields `StreamEvent`s: text deltas, then one
final event carrying the statistics. Adapters are loaded once by name and picked per request.
`Runtime.generate_many(requests)` answers many independent requests at once (batched decoding) and
returns one `GenerationResult` per request, in order; a failed request is its own result's `error`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from uno_local.config import GenerationConfig


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.2
    top_p: float = 0.9
    max_tokens: int = 512
    seed: int = -1
    dry_multiplier: float = 0.0  # llama.cpp's DRY penalty on repeating the answer; 0 = off

    @classmethod
    def from_config(cls, config: GenerationConfig) -> GenerationSettings:
        return cls(config.temperature, config.top_p, config.max_tokens, config.seed, config.dry_multiplier)

    @classmethod
    def greedy(cls, max_tokens: int = 512, dry_multiplier: float = 0.0) -> GenerationSettings:
        return cls(temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=0, dry_multiplier=dry_multiplier)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChatStats:
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float
    duration_ms: float
    finish_reason: str | None = None

    @property
    def tokens_per_s(self) -> float:
        gen_s = (self.duration_ms - self.ttft_ms) / 1000
        return (self.completion_tokens - 1) / gen_s if self.completion_tokens > 1 and gen_s > 0 else 0.0


@dataclass
class StreamEvent:
    delta: str = ""
    stats: ChatStats | None = None  # set on the last event only


@dataclass(frozen=True)
class GenerationRequest:
    """One answer to generate in a batch: the chat so far, its sampling and what constrains it."""

    messages: list[dict]
    settings: GenerationSettings = field(default_factory=GenerationSettings.greedy)
    adapter: str | None = None
    json_schema: dict | None = None
    stop: tuple[str, ...] = ()
    # Plain text the model continues instead of the chat (`messages` unused): a numbered list of the
    # user's questions that a base model extends with one like them (retrain/validate's near questions).
    continuation: str | None = None


@dataclass
class GenerationResult:
    """What one request produced; `finish_reason` is "stop", "length" or "error" (then `error` says why)."""

    index: int  # the request's place in the list given to generate_many
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None
    adapter: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Runtime(Protocol):
    model_name: str
    model_path: Path

    def stream(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        *,
        adapter: str | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[StreamEvent]: ...

    def continue_stream(
        self, messages: list[dict], partial: str, settings: GenerationSettings, *, adapter: str | None = None
    ) -> Iterator[StreamEvent]:
        """Stream more of the answer `partial` to `messages`, as if it had not stopped."""
        ...

    def generate_many(
        self,
        requests: list[GenerationRequest],
        *,
        on_result: Callable[[GenerationResult], None] | None = None,
        n_parallel: int = 8,
    ) -> list[GenerationResult]: ...

    def load_adapter(self, name: str, path: Path) -> None: ...

    def set_threads(self, n: int | None) -> None: ...

    def release(self) -> None:
        """Free the model, its contexts (`generate_many`'s batch context too) and its adapters' weights
        until the next call, which loads them again with the same adapters. The retrain calls it before
        each training run, which needs the memory and generates nothing."""
        ...

    def unload_adapter(self, name: str) -> None: ...

    def adapters(self) -> list[str]: ...

    def close(self) -> None: ...


def complete(
    runtime: Runtime,
    messages: list[dict],
    settings: GenerationSettings,
    adapter: str | None = None,
    json_schema: dict | None = None,
) -> tuple[str, ChatStats | None]:
    """Run a whole answer; returns (text, stats)."""
    parts: list[str] = []
    stats = None
    for event in runtime.stream(messages, settings, adapter=adapter, json_schema=json_schema):
        parts.append(event.delta)
        stats = event.stats or stats
    return "".join(parts), stats
