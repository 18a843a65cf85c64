"""Serving: route each query (Expert adapter, Reflective path or base) and stream the answer.

The responder watches the registry and the cluster table with one cheap query per answer; when a
retrain (in another process) deploys something, the next answer loads the new adapters into the
running llama.cpp model (the base is never reloaded) and routes with the new clusters. An adapter
whose file fails its checksum or structure check is skipped with a warning; the base keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from uno_local.chat import RoutePlan
from uno_local.cluster import Router
from uno_local.errors import AdapterError
from uno_local.route import cluster_state, decide_route, query_text, reflect, reflect_many
from uno_local.runtime import (
    ChatStats,
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
    StreamEvent,
    complete,
)
from uno_local.store.learning import ClusterRow, load_clusters, serving_key


@dataclass
class Answered:
    """One routed answer of `UnoResponder.answer_many`; `error` says why it failed (then `text` is "")."""

    plan: RoutePlan
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0  # every step of a Reflective answer counted (draft, critique, revisions)
    error: str | None = None


class StepFailed(Exception):
    """A step of a batched Reflective answer failed: its Critic's group fails, the other answers stand."""


class Spent(str):
    """A generated text that keeps what it cost, so that a Reflective answer's steps can be summed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def of(cls, result: GenerationResult) -> Spent:
        text = cls(result.text)
        text.prompt_tokens, text.completion_tokens = result.prompt_tokens, len(result.tokens)
        return text


@dataclass
class UnoResponder:
    app: object  # uno_local.app.App
    mode: str | None = None
    warnings: list[str] = field(default_factory=list)  # for the UI: adapters that could not be loaded
    _key: tuple | None = None
    _clusters: dict[int, ClusterRow] = field(default_factory=dict)
    _router: Router | None = None
    _served: dict[str, str] = field(default_factory=dict)  # adapter name -> runtime key loaded

    def refresh(self) -> None:
        """Reload clusters and adapters if a retrain or an `uno adapters` command changed them."""
        key = serving_key(self.app.store)
        if key == self._key:
            return
        self._key = key
        rows = load_clusters(self.app.store)
        self._clusters = {row.label: row for row in rows}
        self._router = (
            Router(
                {r.label: np.asarray(r.centroid) for r in rows},
                self.app.config.uno.unseen_distance,
                {r.label: r.radius for r in rows} if self.app.config.uno.cluster_radius else None,
            )
            if rows
            else None
        )
        runtime = self.app.runtime
        wanted = {rec.name: rec for rec in self.app.registry.active()}
        for name, runtime_key in list(self._served.items()):
            if name not in wanted or wanted[name].key != runtime_key:
                runtime.unload_adapter(runtime_key)
                del self._served[name]
        for name, rec in wanted.items():
            if name in self._served:
                continue
            try:
                self._check(rec)
                runtime.load_adapter(rec.key, rec.gguf)
                self._served[name] = rec.key
            except AdapterError as exc:
                self.warnings.append(str(exc))

    def _check(self, rec) -> None:
        from backends.gguf_export import check_gguf_adapter, read_base_meta

        self.app.registry.verify_file(rec)
        check_gguf_adapter(rec.gguf, read_base_meta(self.app.model_path))

    def plan(self, messages: list[dict], mode: str | None = None) -> RoutePlan:
        """Which path answers this context, and why."""
        self.refresh()
        mode = mode or self.mode or self.app.config.uno.mode
        if self._router is None:
            return RoutePlan("base", None, None, "Nothing has been learned yet, so the base model answered.")
        vec = self.app.embedder.encode([query_text(messages)])[0]
        label, distance = self._router.route(vec)
        row = self._clusters.get(label) if label is not None else None
        decision = decide_route(cluster_state(row, self._served) if row else None, mode)
        reason = f"{decision.reason} (distance to the nearest cluster {distance:.2f})"
        return RoutePlan(decision.kind, decision.adapter, None if label is None else str(label), reason)

    def respond(
        self, messages: list[dict], settings: GenerationSettings
    ) -> tuple[RoutePlan, Iterator[StreamEvent]]:
        plan = self.plan(messages)
        runtime = self.app.runtime
        if plan.route == "expert":
            return plan, runtime.stream(messages, settings, adapter=plan.adapter)
        if plan.route == "reflective":
            return plan, self._reflective(messages, settings, plan.adapter)
        return plan, runtime.stream(messages, settings)

    def answer_many(
        self,
        contexts: list[list[dict]],
        settings: GenerationSettings,
        *,
        n_parallel: int = 8,
        on_answer: Callable[[int, Answered], None] | None = None,
        plans: list[RoutePlan] | None = None,
    ) -> list[Answered]:
        """Every context's routed answer (`uno ask --batch`, `uno eval`), batched: the Expert and base
        answers in one `generate_many` (grouped by adapter), then the Reflective ones, each step of all
        those sharing a Critic in one batch (`route.reflect_many`). `on_answer(i, answered)` as each
        is done. A failed request fails its own answer only (for the Reflective path: its Critic's group).
        `plans`: the contexts' routes when the caller has made them already."""
        runtime = self.app.runtime
        plans = plans or [self.plan(messages) for messages in contexts]
        answered: list[Answered] = [Answered(plan, "") for plan in plans]

        def finish(i: int, answer: Answered) -> None:
            answered[i] = answer
            if on_answer is not None:
                on_answer(i, answer)

        direct = [i for i, plan in enumerate(plans) if plan.route != "reflective"]
        runtime.generate_many(
            [
                GenerationRequest(
                    contexts[i], settings, adapter=plans[i].adapter if plans[i].route == "expert" else None
                )
                for i in direct
            ],
            on_result=lambda r: finish(
                direct[r.index],
                Answered(plans[direct[r.index]], r.text, r.prompt_tokens, len(r.tokens), r.error),
            ),
            n_parallel=n_parallel,
        )
        by_critic: dict[str | None, list[int]] = {}
        for i, plan in enumerate(plans):
            if plan.route == "reflective":
                by_critic.setdefault(plan.adapter, []).append(i)
        for critic, group in by_critic.items():

            def generate_many(prompts: list[list[dict]], adapter: str | None) -> list[str]:
                requests = [GenerationRequest(m, settings, adapter=adapter) for m in prompts]
                results = runtime.generate_many(requests, n_parallel=n_parallel)
                for result in results:
                    if result.error:
                        raise StepFailed(result.error)
                return [Spent.of(result) for result in results]

            try:
                reflected = reflect_many(
                    [contexts[i] for i in group], generate_many, critic, self.app.config.uno.critic_max_rounds
                )
            except StepFailed as exc:
                for i in group:
                    finish(i, Answered(plans[i], "", error=str(exc)))
                continue
            for i, (answer, trace) in zip(group, reflected, strict=True):
                spent = [step.text for step in trace if isinstance(step.text, Spent)]
                finish(
                    i,
                    Answered(
                        plans[i],
                        str(answer),
                        sum(s.prompt_tokens for s in spent),
                        sum(s.completion_tokens for s in spent),
                    ),
                )
        return answered

    def _reflective(self, messages, settings, critic: str) -> Iterator[StreamEvent]:
        """Draft (base), critique (Critic adapter), revise (base); the final text is streamed at once."""
        totals = ChatStats(0, 0, 0.0, 0.0)

        def generate(msgs: list[dict], adapter: str | None) -> str:
            text, stats = complete(self.app.runtime, msgs, settings, adapter=adapter)
            if stats:
                totals.prompt_tokens += stats.prompt_tokens
                totals.completion_tokens += stats.completion_tokens
                totals.duration_ms += stats.duration_ms
            return text

        answer, _trace = reflect(messages, generate, critic, self.app.config.uno.critic_max_rounds)
        totals.ttft_ms = totals.duration_ms
        yield StreamEvent(delta=answer)
        yield StreamEvent(stats=totals)
