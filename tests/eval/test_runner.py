"""`uno eval`'s routed answers: each method makes only the answers an earlier one has not made."""

from __future__ import annotations

from uno_local.chat import RoutePlan
from uno_local.eval.runner import answer_routed, same_path
from uno_local.responder import Answered
from uno_local.runtime import GenerationSettings

EXPERT = RoutePlan("expert", "expert-c0", "0", "")
BASE = RoutePlan("base", None, None, "")
REFLECTIVE = RoutePlan("reflective", "critic-c1", "1", "")
SINGLE_FOR_REFLECTIVE = RoutePlan("base", None, "1", "the mode is uno-single")


class PlannedResponder:
    """`UnoResponder`'s plan and answer_many over fixed plans; records what it was asked to generate."""

    def __init__(self, plans: dict[str, RoutePlan]):
        self.plans, self.asked = plans, []

    def plan(self, messages):
        return self.plans[messages[-1]["content"]]

    def answer_many(self, contexts, settings, *, n_parallel=8, on_answer=None, plans=None):
        self.asked += [c[-1]["content"] for c in contexts]
        out = [
            Answered(p, f"{p.route}: {c[-1]['content']}", 5, 7) for c, p in zip(contexts, plans, strict=True)
        ]
        for i, a in enumerate(out):
            on_answer(i, a)
        return out


def test_same_path():
    assert same_path(EXPERT, RoutePlan("expert", "expert-c0", "0", "another reason"))
    assert same_path(BASE, SINGLE_FOR_REFLECTIVE)  # the same generation, whatever the cluster
    assert not same_path(EXPERT, RoutePlan("expert", "expert-c1", "1", ""))
    assert not same_path(REFLECTIVE, REFLECTIVE)  # several generations; never reused
    assert not same_path(REFLECTIVE, SINGLE_FOR_REFLECTIVE)


def test_uno_answers_only_where_it_routes_otherwise_than_uno_single():
    queries = ["a", "b", "c", "d"]
    contexts = [[{"role": "user", "content": q}] for q in queries]
    settings = GenerationSettings.greedy(16)
    base_method = [Answered(RoutePlan("base"), f"base method: {q}", 5, 7) for q in queries]
    single = PlannedResponder({"a": EXPERT, "b": BASE, "c": SINGLE_FOR_REFLECTIVE, "d": BASE})
    ticks = []
    first = answer_routed(single, contexts, settings, 8, lambda: ticks.append(1), earlier=base_method)
    assert single.asked == ["a"] and len(ticks) == 4  # the base model's answers were made already
    assert [a.text for a in first] == ["expert: a", "base method: b", "base method: c", "base method: d"]

    uno = PlannedResponder(
        {"a": EXPERT, "b": BASE, "c": REFLECTIVE, "d": RoutePlan("expert", "expert-c2", "2", "")}
    )
    ticks.clear()
    second = answer_routed(uno, contexts, settings, 8, lambda: ticks.append(1), earlier=first)
    assert uno.asked == ["c", "d"] and len(ticks) == 4  # every answer ticks, reused or made
    assert [a.text for a in second] == ["expert: a", "base method: b", "reflective: c", "expert: d"]
    assert [a.plan for a in second] == [uno.plans[q] for q in queries]  # each keeps its own mode's route
    assert (second[0].prompt_tokens, second[0].completion_tokens) == (5, 7)
