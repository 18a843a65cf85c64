"""Routing decisions (UNO-reference S12) and the Reflective path over a scripted generate function."""

from __future__ import annotations

import pytest

from uno_local.errors import ConfigError
from uno_local.route import (
    ClusterState,
    cluster_state,
    critic_prompt,
    decide_route,
    parse_suggestions,
    reflect,
    reflect_many,
    revise_many,
    revise_messages,
)
from uno_local.store.learning import ClusterRow

EXPERT = ClusterState(label=2, high_gap=False, expert_adapter="expert-2-v3", critic_adapter="critic-2-v1")


def state(**changes) -> ClusterState:
    fields = {**EXPERT.__dict__, **changes}
    return ClusterState(**fields)


@pytest.mark.parametrize(
    "cluster, mode, kind, adapter, phrase",
    [
        (None, "uno", "base", None, "far from every learned cluster"),
        (None, "uno-single", "base", None, "far from every learned cluster"),
        (EXPERT, "uno", "expert", "expert-2-v3", "validated Expert"),
        (EXPERT, "uno-single", "expert", "expert-2-v3", "validated Expert"),
        (state(vetoed=True), "uno", "base", None, "vetoed cluster 2"),
        (state(high_gap=True), "uno", "reflective", "critic-2-v1", "high cognitive gap"),
        (state(high_gap=True), "uno-single", "base", None, "uno-single"),  # never reflective
        (state(expert_adapter=None), "uno", "reflective", "critic-2-v1", "no Expert adapter that passed"),
        (state(expert_adapter=None), "uno-single", "base", None, "uno-single"),
        (state(high_gap=True, critic_adapter=None), "uno", "base", None, "no Critic adapter"),
        (state(expert_adapter=None, critic_adapter=None), "uno", "base", None, "no Critic adapter"),
        (state(high_gap=True, vetoed=True), "uno", "base", None, "vetoed"),
    ],
)
def test_decide_route(cluster, mode, kind, adapter, phrase):
    decision = decide_route(cluster, mode)
    assert (decision.kind, decision.adapter) == (kind, adapter)
    assert phrase in decision.reason and decision.reason.endswith(".")


SERVED = {"expert-c2": "expert-c2@v3", "critic-c2": "critic-c2@v1"}  # adapter name -> runtime key


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"expert": "expert-c2", "route": "expert"}, state(expert_adapter="expert-c2@v3", critic_adapter=None)),
        ({"expert": "expert-c3"}, state(expert_adapter=None, critic_adapter=None)),  # not served: not used
        ({"critic": "critic-c2", "route": "reflective"}, state(high_gap=True, expert_adapter=None,
                                                               critic_adapter="critic-c2@v1")),
        ({"high_gap": True, "critic": "critic-c2"}, state(high_gap=True, expert_adapter=None,
                                                          critic_adapter="critic-c2@v1")),
        ({"vetoed": True, "expert": "expert-c2"}, state(vetoed=True, expert_adapter="expert-c2@v3",
                                                        critic_adapter=None)),
        # a high gap whose Reflective path could not serve it, and whose Expert then shipped
        ({"high_gap": True, "expert": "expert-c2", "route": "expert"}, state(expert_adapter="expert-c2@v3",
                                                                             critic_adapter=None)),
    ],
)  # fmt: skip
def test_cluster_state_from_a_row(fields, expected):
    row = ClusterRow(label=2, centroid=[1.0], members=[1], rules=[], **fields)
    assert cluster_state(row, SERVED) == expected


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="uno-single"):
        decide_route(EXPERT, "rag")


@pytest.mark.parametrize(
    "critique, expected",
    [
        ("1. Add a sign-off.\n2) Be shorter.", ["Add a sign-off.", "Be shorter."]),
        ("Looks good to me!", []),
        ("", []),
        ("Some intro\n 3. Only this one", ["Only this one"]),
        ("\n".join(f"{i}. tip {i}" for i in range(1, 9)), [f"tip {i}" for i in range(1, 6)]),  # capped at 5
    ],
)
def test_parse_suggestions(critique, expected):
    assert parse_suggestions(critique) == expected


def test_prompts_have_the_reference_sections():
    critic = critic_prompt("How do I squat?", "Bend your knees.")
    assert critic.index("## User Query") < critic.index("## Initial Answer")
    assert "How do I squat?" in critic and critic.rstrip().endswith("Bend your knees.")
    assert len(critic.split("\n\n")[0].split(". ")) == 1  # one instruction sentence
    (message,) = revise_messages("How do I squat?", "Bend your knees.", ["Number the steps.", "Be brief."])
    revise = message["content"]
    assert message["role"] == "user" and "1. Number the steps.\n2. Be brief." in revise
    for section in ("## Initial Answer", "## Suggestion", "## User Question"):
        assert section in revise
    assert (
        revise.index("## Initial Answer") < revise.index("## Suggestion") < revise.index("## User Question")
    )


class Script:
    """A generate function that answers from a list and records every call."""

    def __init__(self, *replies: str) -> None:
        self.replies, self.calls = list(replies), []

    def __call__(self, messages, adapter):
        self.calls.append((messages, adapter))
        return self.replies.pop(0)


QUERY = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "How do I squat?"}]


def test_reflect_one_round():
    gen = Script(
        "Bend your knees.", "1. Number the steps.\n2. Add a warm-up.", "1. Warm up.\n2. Bend your knees."
    )
    answer, trace = reflect(QUERY, gen, "critic-2", max_rounds=1)
    assert answer == "1. Warm up.\n2. Bend your knees."
    assert [s.kind for s in trace] == ["draft", "critique", "revise"]
    assert [adapter for _, adapter in gen.calls] == [None, "critic-2", None]
    assert gen.calls[0][0] == QUERY
    assert gen.calls[1][0][-1]["content"] == critic_prompt("How do I squat?", "Bend your knees.")
    assert gen.calls[2][0][0] == QUERY[0]  # the system prompt still applies to the revision
    assert "1. Number the steps.\n2. Add a warm-up." in gen.calls[2][0][-1]["content"]


R1, R2 = "Bend your knees slowly.", "Warm up first, then bend your knees slowly."


@pytest.mark.parametrize(
    "replies, max_rounds, answer, kinds",
    [
        (["draft", "Nothing to add."], 3, "draft", ["draft", "critique", "skip"]),  # no numbered item
        (["draft", "1. x", "  "], 1, "draft", ["draft", "critique", "refused", "skip"]),  # empty: kept out
        (["draft"], 0, "draft", ["draft"]),
        (["d", "1. a", R1, "1. b", R2], 2, R2, ["draft", "critique", "revise", "critique", "revise"]),
        (["d", "1. a", R1, "fine"], 5, R1, ["draft", "critique", "revise", "critique", "skip"]),
        (["d", "1. a", "ok"], 1, "d", ["draft", "critique", "refused", "skip"]),  # too short for an answer
    ],
)
def test_reflect_stops_and_caps(replies, max_rounds, answer, kinds):
    gen = Script(*replies)
    final, trace = reflect(QUERY, gen, "critic-2", max_rounds=max_rounds)
    assert final == answer and [s.kind for s in trace] == kinds
    assert not gen.replies  # every scripted reply used, none more


def test_reflect_needs_a_user_message():
    with pytest.raises(ValueError, match="no user message"):
        reflect([{"role": "system", "content": "x"}], Script("a"), "critic", 1)


@pytest.mark.parametrize(
    "revision",
    [
        "1. Write the answer in lowercase.\n\n## User Question\n\nHow do I squat?",  # the echo
        "## Initial Answer\n\nBend your knees and keep your back straight.",
        "Revise the initial answer so that it follows the suggestions. Bend your knees.",
        "Bend your knees and keep your back straight.\n1. Write the answer in lowercase.",  # a critic note
    ],
)
def test_reflect_falls_back_to_the_draft_on_a_scaffolding_echo(revision):
    draft = "Bend your knees and keep your back straight."
    gen = Script(draft, "1. Write the answer in lowercase.", revision)
    answer, trace = reflect(QUERY, gen, "critic-2", max_rounds=1)
    assert answer == draft
    assert [s.kind for s in trace] == ["draft", "critique", "refused", "skip"]
    assert trace[-2].text == revision and "echoes its prompt" in trace[-1].text  # never the answer


def test_reflect_many_answers_each_step_in_one_batch_and_takes_known_drafts():
    """Each step is one generate_many call for the queries still revising; known drafts are not
    generated again; a query whose critic has nothing to add stops while the others go on."""
    calls = []
    replies = {
        "critic-2": ["1. Warm up first.", "Looks fine.", "1. Say why."],
        None: ["Warm up first, then bend your knees slowly.", "Rest a day between long runs, always."],
    }

    def generate_many(batch, adapter):
        calls.append((len(batch), adapter))
        return [replies[adapter].pop(0) for _ in batch]

    queries = [
        QUERY,
        [{"role": "user", "content": "How often should I run?"}],
        [{"role": "user", "content": "Why rest?"}],
    ]
    drafts = ["Bend your knees.", "Run three times a week.", "Rest helps."]
    results = reflect_many(queries, generate_many, "critic-2", max_rounds=1, drafts=drafts)
    assert calls == [(3, "critic-2"), (2, None)]  # no draft call; one batch of critiques, one of revisions
    assert [answer for answer, _ in results] == [
        "Warm up first, then bend your knees slowly.",
        "Run three times a week.",
        "Rest a day between long runs, always.",
    ]
    assert [[s.kind for s in trace] for _, trace in results] == [
        ["draft", "critique", "revise"],
        ["draft", "critique", "skip"],
        ["draft", "critique", "revise"],
    ]
    gen = Script("Bend your knees.", "1. Warm up first.", "Warm up first, then bend your knees slowly.")
    assert reflect(QUERY, gen, "critic-2") == results[0]  # reflect is reflect_many of one query


def test_revise_many_revises_in_one_batch_and_says_which_revisions_not_to_keep():
    """One batch for every answer with suggestions; an answer without any comes back as it was, and a
    revision that echoes the prompt's scaffolding comes back with why it must not be kept."""
    calls = []

    def generate_many(batch, adapter):
        calls.append((len(batch), adapter))
        return ["Warm up first, then bend your knees slowly.", "## User Question\n\nWhy rest?"]

    queries = [QUERY, [{"role": "user", "content": "How often?"}], [{"role": "user", "content": "Why rest?"}]]
    out = revise_many(
        queries,
        ["Bend your knees.", "Run often.", "Rest helps."],
        [["Warm up."], [], ["Say why."]],
        generate_many,
    )
    assert calls == [(2, None)]
    assert out[0] == ("Warm up first, then bend your knees slowly.", None)
    assert out[1] == ("Run often.", "there was no suggestion to follow")
    assert out[2][0] == "## User Question\n\nWhy rest?" and "echoes its prompt" in out[2][1]  # not kept
