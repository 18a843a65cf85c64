"""The application context shared by the CLI and the TUI: settings, store, runtime, chat.

Everything heavy (the model, adapters) loads on first use and only once per process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from uno_local import paths
from uno_local.config import FLAGS, Config, load_config, with_override

if TYPE_CHECKING:  # imported where used, so that a command loads only what it needs
    from uno_local.chat import ChatService
    from uno_local.registry import Registry
    from uno_local.runtime import GenerationSettings, Runtime
    from uno_local.store import Store


@dataclass
class Overrides:
    """Command-line values that win over uno.toml."""

    model: str | None = None
    threads: int | None = None
    n_ctx: int | None = None

    def by_flag(self) -> dict[str, object]:
        return {"--model": self.model, "--threads": self.threads, "--ctx": self.n_ctx}


@dataclass
class App:
    home: Path
    config: Config
    _closers: list = field(default_factory=list)
    _resolved: dict = field(default_factory=dict)  # (model.path, folders) -> the GGUF it names

    @classmethod
    def open(cls, overrides: Overrides | None = None, home: Path | None = None) -> App:
        home = home or paths.user_dir()
        config = load_config(paths.config_path(home))
        for flag, value in (overrides or Overrides()).by_flag().items():
            if value is not None:
                config = with_override(config, FLAGS[flag], value, source=flag)
        return cls(home=home, config=config)

    @property
    def model_path(self) -> Path:
        if not self.config.model.path:
            return paths.embedded_chat_model()
        from uno_local.models import resolve_model

        key = (self.config.model.path, tuple(self.config.model.folders))
        if key not in self._resolved:  # a name is looked up once, not at every use
            self._resolved[key] = resolve_model(*key)
        return self._resolved[key]

    @cached_property
    def store(self) -> Store:
        from uno_local.store import Store

        store = Store(paths.db_path(self.home))
        self._closers.append(store.close)
        return store

    @cached_property
    def registry(self) -> Registry:
        from uno_local.registry import Registry

        return Registry(
            self.store,
            paths.adapters_dir(self.home),
            base_id=lambda: self.base_id,
            model_name=self.model_path.name,
        )

    @cached_property
    def base_id(self) -> str:
        """Identity of the chat model's weights: adapters trained on it are served only on it."""
        from backends.llama_runtime import check_model_file
        from uno_local.models import identity

        return identity(check_model_file(self.model_path), self.cache_dir)

    @property
    def cache_dir(self) -> Path:
        return paths.cache_dir(self.home)

    @cached_property
    def embedder(self):
        """The sentence embedder used for clustering, the gap and routing (loaded on first use)."""
        from backends import open_embedder

        return open_embedder(Path(self.config.embedder.path) if self.config.embedder.path else None)

    @cached_property
    def runtime(self) -> Runtime:
        from backends import open_runtime

        runtime = open_runtime(
            self.model_path,
            n_ctx=self.config.model.n_ctx,
            n_threads=self.config.model.n_threads,
            n_batch=self.config.model.n_batch,
            system_prompt=self.config.generation.system_prompt,
            chat_format=self.config.model.chat_format,
        )
        self._closers.append(runtime.close)
        return runtime

    @cached_property
    def chat(self) -> ChatService:
        from uno_local.chat import ChatService

        return ChatService(self.store, self.runtime, self.responder())

    def responder(self):
        """The router that picks base, Expert or Reflective per query (base until something is learned)."""
        from uno_local.responder import UnoResponder

        return UnoResponder(self)

    def settings(self, greedy: bool = False, **changes) -> GenerationSettings:
        """The generation settings for one answer: uno.toml's, or greedy, with `changes` (command-line
        values such as `--max-tokens`, checked like the `[generation]` key they change) on top."""
        from uno_local.runtime import GenerationSettings

        changes = {key: value for key, value in changes.items() if value is not None}
        for key, value in changes.items():  # a bad one is refused in one sentence, as in uno.toml
            with_override(self.config, f"generation.{key}", value, source=f"--{key.replace('_', '-')}")
        base = GenerationSettings.from_config(self.config.generation)
        if greedy:
            base = GenerationSettings.greedy(base.max_tokens, base.dry_multiplier)
        return GenerationSettings(**{**base.as_dict(), **changes})

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
