"""What every stage may use besides the state: the app's store, models and settings, progress and the
artifact cache.

Generation goes through three small functions on the context (`json_rules`, `revise`, `answer`), one
per kind of call the stages make, so a batched generator can replace them in one place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from uno_local.errors import TrainingError
from uno_local.retrain.runs import choose_backend
from uno_local.retrain.state import Progress, RetrainOptions, StageEvent
from uno_local.runtime import GenerationSettings, complete
from uno_local.store.learning import get_artifact, input_hash, put_artifact

RULES_TOKENS = 40  # rules are short; grammar-constrained sampling slows down on long strings
MAX_RULE_CHARS = 90


def open_trainer(backend: str, model_path: Path, cache_dir: Path):
    from backends import get_trainer

    return get_trainer(backend, model_path, cache_dir)


def export_gguf(peft_dir: Path, model_path: Path, target: Path) -> None:
    from backends.gguf_export import export_peft_to_gguf

    export_peft_to_gguf(peft_dir, model_path, target)


def open_parity_checker(model_path: Path, cache_dir: Path, prompts: list[str]):
    from backends.hf_base import ensure_hf_base
    from backends.parity import ParityChecker

    return ParityChecker(model_path, ensure_hf_base(model_path, cache_dir), prompts)


@dataclass
class Tools:
    """The heavy parts besides the app's runtime and embedder, each opened on first use. Tests pass
    fakes that follow the same interfaces (`Trainer`, the exporter, `ParityChecker`)."""

    open_trainer: Callable = open_trainer  # (backend, model_path, cache_dir) -> Trainer
    export_gguf: Callable = export_gguf  # (peft_dir, model_path, target) -> None
    open_parity_checker: Callable = open_parity_checker  # (model_path, cache_dir, prompts) -> checker


class Context:
    """The I/O handles of one retrain. `app` is an `uno_local.app.App` (or anything with its fields)."""

    def __init__(
        self,
        app,
        options: RetrainOptions | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        tools: Tools | None = None,
    ) -> None:
        self.app = app
        self.tools = tools or Tools()
        self.store = app.store
        self.cfg = app.config.uno
        self.options = options or RetrainOptions()
        self.backend = choose_backend(
            self.options.backend if self.options.backend != "auto" else app.config.train.backend
        )
        self.progress = progress or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.model_name = app.model_path.name
        # Held-out answers and revisions as long as the chat allows: a closing line must fit, as for users.
        self.answer_tokens = app.config.generation.max_tokens
        self.cached: Counter = Counter()  # stage -> results reused from an earlier run
        self._trainer = None

    def emit(self, stage: str, done: int, total: int, message: str = "") -> None:
        """Report progress, then stop here if asked to (what is deployed keeps serving)."""
        self.progress(StageEvent(stage, done, total, message))
        if self.should_stop():
            raise TrainingError(
                f"Retrain stopped during {stage}; what is deployed keeps serving. Run it again to resume."
            )

    def cached_artifact(
        self, stage: str, key: str, parts: tuple, compute: Callable[[], object], provenance: dict
    ) -> object:
        """The stored result for these inputs, or `compute()` stored under their hash."""
        h = input_hash(stage, self.model_name, *parts)
        found = get_artifact(self.store, stage, key, h)
        if found is not None:
            self.cached[stage] += 1
            return found
        data = compute()
        put_artifact(self.store, stage, key, h, data, {"model": self.model_name, **provenance})
        return data

    @property
    def trainer(self):
        if self._trainer is None:
            self._trainer = self.tools.open_trainer(self.backend, self.app.model_path, self.app.cache_dir)
        return self._trainer

    # generation: one function per kind of call

    def json_rules(self, messages: list[dict], schema: dict) -> str:
        """Grammar-constrained JSON, cut short when a string runs on: llama.cpp's grammar sampling slows
        down with string length, and a rule that long is unusable anyway (the caller then falls back)."""
        parts: list[str] = []
        events = self.app.runtime.stream(
            messages, GenerationSettings.greedy(RULES_TOKENS), json_schema=schema
        )
        try:
            for event in events:
                parts.append(event.delta)
                text = "".join(parts)
                if len(text) - text.rfind('"') > MAX_RULE_CHARS:
                    break
        finally:
            events.close()
        return "".join(parts)

    def revise(self, messages: list[dict], n: int) -> list[str]:
        """`n` sampled revisions (seeded) of one revision prompt."""
        return [
            complete(self.app.runtime, messages, GenerationSettings(0.8, 0.9, self.answer_tokens, 42 + j))[0]
            for j in range(n)
        ]

    def answer(self, prompts: list[list[dict]], adapter_file: Path | None) -> list[str]:
        """Greedy answers to `prompts` with the adapter in `adapter_file` (None: the base model)."""
        runtime = self.app.runtime
        name = None
        if adapter_file is not None:
            name = f"validate:{adapter_file}"
            runtime.load_adapter(name, adapter_file)
        try:
            settings = GenerationSettings.greedy(self.answer_tokens)
            return [complete(runtime, prompt, settings, adapter=name)[0] for prompt in prompts]
        finally:
            if name:
                runtime.unload_adapter(name)
