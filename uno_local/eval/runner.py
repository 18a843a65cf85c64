"""Run `uno eval`: a scenario -> every method's answers, through the app's own runtime and store.

In a temporary data dir (never the user's): the base model answers the test and control queries
greedily; the simulated user answers the train queries' base answers with feedback, which goes
through the normal import path; `rag` retrieves the k nearest past logs by query embedding and puts
their feedback and corrections into the prompt; `uno retrain` runs the whole loop once, and
`uno-single` and `uno` answer with their routing modes. Each method's answers (and the simulated
user's logs) go to the runtime as one batch (`generate_many`); `uno-single` and `uno` through
`UnoResponder.answer_many`, which batches each step of the Reflective answers too. A query routed
along a path already taken keeps that answer, the same greedy request (`answer_routed`): `uno-single`
keeps the base method's where it routes to the base model, `uno` keeps `uno-single`'s (the two differ
only on the Reflective path). Pure helpers (quick subsampling, the RAG prompt) are kept apart.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from uno_local import paths
from uno_local.chat import RoutePlan
from uno_local.config import config_to_toml
from uno_local.errors import ModelError
from uno_local.eval.metrics import MethodRun, Usage, build_report
from uno_local.eval.scenario import Scenario
from uno_local.eval.simuser import feedback_summary, simulate_logs
from uno_local.logs import import_records, parse_record
from uno_local.responder import Answered
from uno_local.runtime import GenerationRequest, GenerationResult, GenerationSettings

METHODS = ("base", "rag", "uno-single", "uno")
RAG_K = 3
# Answers under test and the simulated logs are as long as the chat's (generation.max_tokens) unless the
# scenario caps them (quick.json does, for CI): a closing habit must arrive within the limit a user has,
# and the trainer keeps the part of a long pair where chosen and rejected differ (training.answer_window).

Progress = Callable[[str, int, int], None]  # (what, done, total)
# Contexts and a tick per finished answer -> (text, usage, route) per context, in order.
AnswerMany = Callable[[list[list[dict]], Callable[[], None]], list[tuple[str, Usage, dict]]]


def _answered(result: GenerationResult) -> GenerationResult:
    if not result.ok:
        raise ModelError(result.error or "An answer failed.")
    return result


def _answered_text(answer: Answered) -> str:
    if answer.error:
        raise ModelError(answer.error)
    return answer.text


def quick_scenario(scenario: Scenario, train: int = 8, test: int = 3, controls: int = 3) -> Scenario:
    """A smaller copy for CI: the first few train and test queries per topic, a few controls."""
    topics = [dataclasses.replace(t, train=t.train[:train], test=t.test[:test]) for t in scenario.topics]
    return dataclasses.replace(scenario, topics=topics, controls=scenario.controls[:controls])


def rag_messages(query: str, memories: list[dict]) -> list[dict]:
    """The RAG-memory prompt: the user's past feedback on similar questions, then the question."""
    if not memories:
        return [{"role": "user", "content": query}]
    lines = []
    for m in memories:
        note = f"- Earlier question: {m['query']}\n  Your answer then: {m['answer'][:300]}"
        if m.get("comment"):
            note += f"\n  The user said: {m['comment']}"
        if m.get("correction"):
            note += f"\n  The user's preferred answer: {m['correction'][:400]}"
        lines.append(note)
    system = "This user gave feedback on earlier answers. Follow their preferences.\n" + "\n".join(lines)
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


def same_path(a: RoutePlan, b: RoutePlan) -> bool:
    """Pure: two plans send a query through the same generation (a Reflective one differs from any other)."""
    return a.route != "reflective" and (a.route, a.adapter) == (b.route, b.adapter)


def answer_routed(
    responder,
    contexts: list[list[dict]],
    settings: GenerationSettings,
    n_parallel: int,
    tick: Callable[[], None],
    earlier: list[Answered] | None = None,
) -> list[Answered]:
    """Every context's routed answer; with `earlier` (another method's answers to the same contexts), a
    context this mode routes along the same path keeps that answer: the same greedy request, not made
    twice."""
    plans = [responder.plan(messages) for messages in contexts]
    answered: list[Answered | None] = [None] * len(contexts)
    if earlier is not None:
        for i, (plan, before) in enumerate(zip(plans, earlier, strict=True)):
            if same_path(plan, before.plan):
                answered[i] = dataclasses.replace(before, plan=plan)
                tick()
    todo = [i for i, a in enumerate(answered) if a is None]
    fresh = responder.answer_many(
        [contexts[i] for i in todo],
        settings,
        n_parallel=n_parallel,
        on_answer=lambda _i, _a: tick(),
        plans=[plans[i] for i in todo],
    )
    for i, answer in zip(todo, fresh, strict=True):
        answered[i] = answer
    return answered


def run_eval(
    scenario: Scenario,
    methods: list[str],
    progress: Progress | None = None,
    backend: str = "auto",
    epochs: int | None = None,
    config=None,
    keep: Path | None = None,
) -> dict:
    """Run the scenario end to end in a temporary data dir (with `config`, the user's settings); with
    `keep`, in that new folder instead, left behind (with the settings used, in its uno.toml) to inspect."""
    from uno_local.app import App
    from uno_local.retrain import Retrain, RetrainOptions

    progress = progress or (lambda what, done, total: None)
    methods = [m for m in METHODS if m in methods or m == "base"]
    queries = [(t.name, q) for t in scenario.topics for q in t.test]
    runs: list[MethodRun] = []
    meta: dict = {"methods": methods}
    with contextlib.ExitStack() as stack:
        home = (
            keep
            if keep is not None
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="uno-eval-")))
        )
        app = App.open(home=home)
        if config is not None:
            app.config = copy.deepcopy(config)
        if epochs:
            app.config.train.epochs = epochs
        if keep is not None:
            settings_file = paths.config_path(paths.ensure_private_dir(home))
            settings_file.write_text(config_to_toml(app.config), encoding="utf-8")
            settings_file.chmod(0o600)
        limit = app.config.generation.max_tokens
        dry = app.config.generation.dry_multiplier
        settings = GenerationSettings.greedy(min(scenario.answer_tokens or limit, limit), dry)
        log_settings = GenerationSettings.greedy(min(scenario.log_tokens or limit, limit), dry)
        try:

            def answer_all(
                name: str, build: Callable[[str], list[dict]], answer_many: AnswerMany
            ) -> MethodRun:
                asked = [*queries, *((None, q) for q in scenario.controls)]
                done = [0]

                def tick() -> None:
                    done[0] += 1
                    progress(name, done[0], len(asked))

                answers = answer_many([build(query) for _, query in asked], tick)
                test: dict[str, list[str]] = {t.name: [] for t in scenario.topics}
                usage, controls, routes = [], [], []
                for (topic, query), (text, used, route) in zip(asked, answers, strict=True):
                    (controls if topic is None else test[topic]).append(text)
                    usage.append(used)
                    routes.append({"topic": topic, "query": query, **route, "answer": text})
                return MethodRun(name, test, controls, usage, extra={"routes": routes})

            def generate(contexts, tick, gen_settings=settings, adapters=None) -> list[GenerationResult]:
                adapters = adapters or [None] * len(contexts)
                requests = [
                    GenerationRequest(m, gen_settings, adapter=a)
                    for m, a in zip(contexts, adapters, strict=True)
                ]
                results = app.runtime.generate_many(
                    requests, on_result=lambda _: tick(), n_parallel=app.config.model.n_parallel
                )
                return [_answered(r) for r in results]

            def base_answers(contexts, tick):
                return [
                    (r.text, Usage(r.prompt_tokens, len(r.tokens)), {"route": "base", "cluster": None})
                    for r in generate(contexts, tick)
                ]

            def single(query):
                return [{"role": "user", "content": query}]

            runs.append(answer_all("base", single, base_answers))
            # uno-single keeps these wherever it routes to the base model; uno keeps uno-single's
            by_mode: dict[str, list[Answered]] = {
                "base": [
                    Answered(RoutePlan("base"), route["answer"], used.prompt_tokens, used.completion_tokens)
                    for route, used in zip(runs[0].extra["routes"], runs[0].usage, strict=True)
                ]
            }

            n_train = sum(len(t.train) for t in scenario.topics)
            done = [0]

            def answer_fn(pairs):
                def tick() -> None:
                    done[0] += 1
                    progress("simulate", done[0], n_train)

                return [r.text for r in generate([single(q) for _, q in pairs], tick, log_settings)]

            records = simulate_logs(scenario, answer_fn)
            import_records(app.store, [parse_record(r) for r in records], title_prefix="Simulated")
            meta["feedback"] = feedback_summary(records)

            if "rag" in methods:
                memories = [
                    {
                        "query": r["messages"][-2]["content"],
                        "answer": r["messages"][-1]["content"],
                        "comment": r["feedback"]["comment"],
                        "correction": r["feedback"]["correction"],
                    }
                    for r in records
                ]
                vecs = app.embedder.encode([m["query"] for m in memories])

                def rag_build(query):
                    sims = vecs @ app.embedder.encode([query])[0]
                    top = [memories[i] for i in np.argsort(-sims)[:RAG_K]]
                    return rag_messages(query, top)

                runs.append(answer_all("rag", rag_build, base_answers))

            if "uno" in methods or "uno-single" in methods:
                start = time.perf_counter()
                report = Retrain(
                    app,
                    RetrainOptions(backend=backend),
                    progress=lambda e: progress(f"retrain: {e.stage}", e.done, max(e.total, 1)),
                ).run()
                training = {
                    "wall_s": time.perf_counter() - start,
                    "tokens": report.trained_tokens,
                    "gap_skipped_tokens": report.gap_skipped_tokens,
                    "stage_seconds": report.stage_seconds,
                }
                validator = report.clusters
                for mode in ("uno-single", "uno"):
                    if mode not in methods:
                        continue
                    responder = app.responder()
                    responder.mode = mode

                    def routed(contexts, tick, responder=responder, mode=mode):
                        earlier = by_mode.get("uno-single", by_mode["base"])
                        answered = by_mode[mode] = answer_routed(
                            responder, contexts, settings, app.config.model.n_parallel, tick, earlier
                        )
                        return [
                            (
                                _answered_text(a),
                                Usage(a.prompt_tokens, a.completion_tokens),
                                {"route": a.plan.route, "cluster": a.plan.cluster, "adapter": a.plan.adapter},
                            )
                            for a in answered
                        ]

                    run = answer_all(mode, single, routed)
                    run.training, run.validator = training, validator
                    runs.append(run)
        finally:
            app.close()
    return build_report(scenario, runs, meta=meta)
