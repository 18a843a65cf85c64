"""What every stage may use besides the state: the app's store, models and settings, progress and the
artifact cache.

Generation goes through three small functions on the context (`json_rules`, `revise`, `answer`), one
per kind of call the stages make, each answered by the runtime's batched decoding (`generate_many`).
`cached_batch` runs a stage's per-log computations: it first runs the uncached ones with generation
recorded instead of done, answers every recorded request in one batched call, then runs them for real
(each finds its answers ready), so the pure cores stay plain functions of a `generate` callable.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from uno_local.errors import TrainingError
from uno_local.retrain.runs import choose_backend
from uno_local.retrain.state import Progress, RetrainOptions, StageEvent
from uno_local.runtime import GenerationRequest, GenerationSettings
from uno_local.store.learning import get_artifact, input_hash, put_artifact

if TYPE_CHECKING:
    from uno_local.train import LogData

RULES_TOKENS = 40  # rules are short; grammar-constrained sampling slows down on long strings
MAX_RULE_CHARS = 90


def cut_runaway_string(text: str, limit: int = MAX_RULE_CHARS) -> str:
    """Pure: `text` cut where a JSON string first runs past `limit` characters (a rule that long is
    unusable; the distiller then falls back), as a stream cut at that point would have left it."""
    for end in range(1, len(text) + 1):
        head = text[:end]
        if len(head) - head.rfind('"') > limit:
            return head
    return text


@dataclass
class ArtifactJob:
    """One per-log computation of a stage: its artifact key, the inputs it is cached under, and how to
    compute it (calling the context's generation functions)."""

    key: str
    parts: tuple
    compute: Callable[[], object]
    provenance: dict


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
        self.dry = app.config.generation.dry_multiplier  # every free-text answer is decoded as chat's
        # What cached answers and revisions are keyed by besides their inputs: nothing while the DRY
        # penalty is off, so the caches of retrains from before it existed stay valid.
        self.decoding: tuple = (("dry", self.dry),) if self.dry else ()
        self.cached: Counter = Counter()  # stage -> results reused from an earlier run
        self._trainer = None
        self._recording: dict[str, list[GenerationRequest]] | None = None  # see `cached_batch`
        self._ready: dict[str, list[str]] = {}  # answers generated ahead, by request key

    def emit(self, stage: str, done: int, total: int, message: str = "") -> None:
        """Report progress, then stop here if asked to (what is deployed keeps serving)."""
        self.progress(StageEvent(stage, done, total, message))
        if self.should_stop():
            raise TrainingError(
                f"Retrain stopped during {stage}; what is deployed keeps serving. Run it again to resume."
            )

    def cached_batch(self, stage: str, jobs: list[ArtifactJob], *, report: bool = True) -> list[object]:
        """Each job's stored result, or its computation stored under its inputs' hash; the uncached
        jobs' generation is batched (see the module's docstring). Reports progress per job as `stage`
        (unless `report` is False: a part of a larger stage)."""
        hashes = [input_hash(stage, self.model_name, *job.parts) for job in jobs]
        found = [get_artifact(self.store, stage, job.key, h) for job, h in zip(jobs, hashes, strict=True)]
        missing = [job for job, data in zip(jobs, found, strict=True) if data is None]
        self._generate_ahead(stage if report else None, [job.compute for job in missing])
        results = []
        for i, (job, h, data) in enumerate(zip(jobs, hashes, found, strict=True), 1):
            if data is None:
                data = job.compute()
                put_artifact(
                    self.store, stage, job.key, h, data, {"model": self.model_name, **job.provenance}
                )
            else:
                self.cached[stage] += 1
            results.append(data)
            if report:
                self.emit(stage, i, len(jobs))
        self._ready.clear()
        return results

    def _generate_ahead(self, stage: str | None, computations: list[Callable[[], object]]) -> None:
        """Run `computations` with generation recorded (a dry run: results dropped, nothing stored),
        then answer all the recorded requests in one batched call."""
        self._recording = {}
        try:
            for compute in computations:
                with suppress(Exception):  # a dry run's placeholder answers may upset a core: fine
                    compute()
            recorded = self._recording
        finally:
            self._recording = None
        requests = [r for group in recorded.values() for r in group]
        if len(requests) < 2:
            return  # nothing to batch: the real run generates it
        total = len(requests)
        answers = self._generate(
            requests,
            stage and (lambda done: self.emit(stage, 0, 1, f"generating {done}/{total} answers (batched)")),
        )
        for key, group in recorded.items():
            self._ready[key], answers = answers[: len(group)], answers[len(group) :]

    def _generate(self, requests: list[GenerationRequest], on_done: Callable[[int], None] | None = None):
        """The texts of `requests`, batched; a request that failed fails the stage (one sentence)."""
        done = 0

        def count(_result) -> None:
            nonlocal done
            done += 1
            if on_done is not None:
                on_done(done)

        results = self.app.runtime.generate_many(
            requests, on_result=count, n_parallel=self.app.config.model.n_parallel
        )
        for result in results:
            if result.error:
                raise TrainingError(f"Generation failed: {result.error}")
        return [result.text for result in results]

    def _requests(self, key: str, requests: list[GenerationRequest]) -> list[str]:
        """Answers to `requests`: generated ahead, recorded (a dry run gets empty placeholders), or
        generated now."""
        if self._recording is not None:
            self._recording[key] = requests
            return [""] * len(requests)
        if key in self._ready:
            return self._ready.pop(key)
        return self._generate(requests)

    @property
    def trainer(self):
        if self._trainer is None:
            self._trainer = self.tools.open_trainer(self.backend, self.app.model_path, self.app.cache_dir)
        return self._trainer

    def count_tokens(self, text: str) -> int:
        """How many of the model's tokens `text` takes."""
        return len(self.app.runtime.tokenize(text))

    # generation: one function per kind of call

    def json_rules(self, messages: list[dict], schema: dict) -> str:
        """Grammar-constrained JSON, greedy, cut where a string runs on (`cut_runaway_string`)."""
        request = GenerationRequest(messages, GenerationSettings.greedy(RULES_TOKENS), json_schema=schema)
        key = json.dumps(["json", messages, schema], sort_keys=True)
        return cut_runaway_string(self._requests(key, [request])[0])

    def revise(self, messages: list[dict], n: int) -> list[str]:
        """`n` sampled revisions (seeded) of one revision prompt."""
        requests = [
            GenerationRequest(messages, GenerationSettings(0.8, 0.9, self.answer_tokens, 42 + j, self.dry))
            for j in range(n)
        ]
        return self._requests(json.dumps(["revise", messages, n, self.dry], sort_keys=True), requests)

    def continue_texts(
        self, texts: list[str], tokens: int, temperature: float, top_p: float, seed: int
    ) -> list[str]:
        """The base model's continuations of plain `texts` (no chat template), each to its first line's
        end, sampled with seeds `seed`, `seed + 1`, ... (the same texts give the same lines)."""
        requests = [
            GenerationRequest(
                [], GenerationSettings(temperature, top_p, tokens, seed + i), stop=("\n",), continuation=text
            )
            for i, text in enumerate(texts)
        ]
        key = json.dumps(["continue", texts, tokens, temperature, top_p, seed], sort_keys=True)
        return self._requests(key, requests)

    def base_answers(self, logs: list[LogData], tokens: int | None = None) -> list[str]:
        """The base model's greedy answers to `logs`, cached per log (and per token budget, when it is
        not the chat's): the baseline every adapter and the Reflective path are judged against."""
        tokens = tokens or self.answer_tokens
        return self.cached_batch(
            "base_answer" if tokens == self.answer_tokens else f"base_answer_{tokens}",
            [
                ArtifactJob(
                    str(log.message_id),
                    (log.prompt, tokens, *self.decoding),
                    lambda log=log: self.answer([log.prompt], None, tokens)[0],
                    {"decoding": "greedy"},
                )
                for log in logs
            ],
            report=False,
        )

    def answer(
        self, prompts: list[list[dict]], adapter_file: Path | None, tokens: int | None = None
    ) -> list[str]:
        """Greedy answers to `prompts`, at most `tokens` long (the chat's budget by default), with the
        adapter in `adapter_file` (None: the base model)."""
        runtime = self.app.runtime
        name = None
        if adapter_file is not None and self._recording is None:
            name = f"validate:{adapter_file}"
            runtime.load_adapter(name, adapter_file)
        try:
            settings = GenerationSettings.greedy(tokens or self.answer_tokens, self.dry)
            requests = [GenerationRequest(prompt, settings, adapter=name) for prompt in prompts]
            key = json.dumps(
                ["answer", prompts, str(adapter_file), settings.max_tokens, self.dry], sort_keys=True
            )
            return self._requests(key, requests)
        finally:
            if name:
                runtime.unload_adapter(name)
