"""Serving what a retrain learned, on the fakes (tests/retrain/conftest.py): routing to the deployed
adapters, and `UnoResponder.answer_many` (what `uno ask --batch` and `uno eval` answer through)."""

from __future__ import annotations

from tests.retrain.fakes import SIGN_OFF, add_cooking, add_garden
from tests.retrain.test_pipeline import retrain


def test_what_was_learned_serves(app, fakes, monkeypatch):
    """The responder routes by the new cluster table to the deployed adapters, whose files carry what the
    fake trainer learned. (The fake GGUF is not a real one: only its checksum is checked here.)"""
    from uno_local.responder import UnoResponder

    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    monkeypatch.setattr(UnoResponder, "_check", lambda self, rec: app.registry.verify_file(rec))
    responder = UnoResponder(app)
    plans = [
        responder.plan([{"role": "user", "content": q}]) for q in ("How do I cook an egg?", "What is jazz?")
    ]
    assert [(p.route, p.adapter, p.cluster) for p in plans] == [
        ("expert", "expert-c0@v1", "0"),
        ("base", None, None),
    ]
    assert fakes.runtime.loaded["expert-c0@v1"] == f'End the answer with "{SIGN_OFF}".'


def test_answer_many_batches_each_reflective_step_and_answers_as_one_at_a_time(app, fakes, monkeypatch):
    """`uno ask --batch` and `uno eval` answer through `answer_many`: the base and Expert answers in one
    batch, then each Reflective step (drafts, critiques, revisions) for all queries of a Critic in one
    batch, with the same answers and token counts as answering one query at a time."""
    from uno_local.responder import UnoResponder

    app.config.uno.gap_threshold = 0.0  # every cluster high-gap: both take the Reflective path
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    monkeypatch.setattr(UnoResponder, "_check", lambda self, rec: app.registry.verify_file(rec))
    responder = UnoResponder(app)
    queries = ["How do I water orchid?", "How do I prune roses?", "How do I grow basil?", "What is jazz?"]
    contexts = [[{"role": "user", "content": q}] for q in queries]
    settings = app.settings(greedy=True)
    seen = []
    before = len(fakes.runtime.batches)
    answered = responder.answer_many(contexts, settings, on_answer=lambda i, a: seen.append(i))
    batches = fakes.runtime.batches[before:]
    assert [a.plan.route for a in answered] == ["reflective"] * 3 + ["base"]
    assert sorted(seen) == [0, 1, 2, 3]
    assert [len(b) for b in batches] == [1, 3, 3, 3]  # the base answer, then drafts, critiques, revisions
    for context, a in zip(contexts, answered, strict=True):
        plan, events = responder.respond(context, settings)
        events = list(events)
        assert a.text == "".join(e.delta for e in events) and a.error is None and a.completion_tokens > 0
        assert (a.prompt_tokens, a.completion_tokens) == (
            events[-1].stats.prompt_tokens,
            events[-1].stats.completion_tokens,
        )
    assert answered[0].text.startswith("1. ")  # the garden Critic's suggestion was followed


def test_a_failed_reflective_step_fails_its_critics_answers_only(app, fakes, monkeypatch):
    from uno_local.responder import UnoResponder
    from uno_local.runtime import GenerationResult

    app.config.uno.gap_threshold = 0.0
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    monkeypatch.setattr(UnoResponder, "_check", lambda self, rec: app.registry.verify_file(rec))
    real = fakes.runtime.generate_many

    def critics_fail(requests, **kw):
        if any(r.adapter for r in requests):
            return [GenerationResult(i, error="the Critic's adapter is gone") for i in range(len(requests))]
        return real(requests, **kw)

    monkeypatch.setattr(fakes.runtime, "generate_many", critics_fail)
    contexts = [[{"role": "user", "content": q}] for q in ("How do I prune roses?", "What is jazz?")]
    answered = UnoResponder(app).answer_many(contexts, app.settings(greedy=True))
    assert [(a.plan.route, a.error) for a in answered] == [
        ("reflective", "the Critic's adapter is gone"),
        ("base", None),
    ]
    assert answered[1].text and not answered[0].text


def test_a_high_gap_whose_expert_shipped_is_served_by_it(app, fakes, monkeypatch):
    """A high gap whose Reflective path could not serve it trains an Expert; once that ships, its cluster's
    questions go to it (tech-support's Wi-Fi Expert shipped and still answered none: routing read the high
    gap alone)."""
    from uno_local.responder import UnoResponder

    app.runtime.revises = False
    app.config.uno.gap_threshold = 0.0
    add_cooking(app)
    retrain(app, fakes)
    monkeypatch.setattr(UnoResponder, "_check", lambda self, rec: app.registry.verify_file(rec))
    plan = UnoResponder(app).plan([{"role": "user", "content": "How do I cook an egg?"}])
    assert (plan.route, plan.adapter, plan.cluster) == ("expert", "expert-c0@v1", "0")
