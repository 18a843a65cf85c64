"""Serving: route each query (Expert adapter, Reflective path or base) and stream the answer.

The responder watches the registry and the cluster table with one cheap query per answer; when a
retrain (in another process) deploys something, the next answer loads the new adapters into the
running llama.cpp model (the base is never reloaded) and routes with the new clusters. An adapter
whose file fails its checksum or structure check is skipped with a warning; the base keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from uno_local.chat import RoutePlan
from uno_local.cluster import Router
from uno_local.errors import AdapterError
from uno_local.route import cluster_state, decide_route, query_text, reflect
from uno_local.runtime import ChatStats, GenerationSettings, StreamEvent, complete
from uno_local.store.learning import ClusterRow, load_clusters, serving_key


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
