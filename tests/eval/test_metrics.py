"""Metrics: adherence per topic and overall, control drift, tokens, and the report's shape."""

from __future__ import annotations

import pytest

from uno_local.eval.metrics import (
    MethodRun,
    Usage,
    build_report,
    control_unchanged,
    normalise,
    overall_adherence,
    routing_figures,
    token_means,
    topic_adherence,
    validator_vs_test,
)
from uno_local.eval.scenario import Scenario, parse_scenario


def scenario() -> Scenario:
    def topic(name: str, check: dict, n_test: int) -> dict:
        return {
            "name": name,
            "rule": {"text": name, "check": check, "feedback": ["no"]},
            "train": [f"{name} train"],
            "test": [f"{name} test {i}" for i in range(n_test)],
        }

    return parse_scenario(
        {
            "name": "m",
            "seed": 1,
            "topics": [
                topic("sign", {"type": "ends_with", "value": "Bye."}, 4),
                topic("short", {"type": "max_words", "n": 3}, 2),
            ],
            "controls": ["c0", "c1", "c2", "c3"],
        },
        "m.json",
    )


ANSWERS = {"sign": ["a Bye.", "b", "c Bye.  ", "Bye"], "short": ["one two", "one two three four"]}


def test_topic_and_overall_adherence() -> None:
    s = scenario()
    assert topic_adherence(s, ANSWERS) == {"sign": 0.5, "short": 0.5}
    assert overall_adherence(s, ANSWERS) == pytest.approx(3 / 6)
    skewed = {"sign": ["Done. Bye."] * 4, "short": ["too many words here"] * 2}
    assert overall_adherence(s, skewed) == pytest.approx(4 / 6)  # pooled, not the mean of 1.0 and 0.0


def test_an_answer_that_is_only_the_habit_does_not_adhere() -> None:
    """The measured case (tech-support's Wi-Fi Expert, session 31): the sign-off twice and nothing else
    ends with the sign-off but answers nothing; an empty answer is under any word limit."""
    s = scenario()
    only_habit = {"sign": ["Bye.\n\nBye.", "bye.", "  Bye.", "Restart it. Bye."], "short": ["", "one"]}
    assert topic_adherence(s, only_habit) == {"sign": 0.25, "short": 0.5}


@pytest.mark.parametrize(
    "answers",
    [{"sign": ["Bye."] * 4}, {"sign": ["Bye."] * 3, "short": ["a", "b"]}],
)
def test_adherence_needs_every_test_answer(answers: dict) -> None:
    with pytest.raises(ValueError, match="test answers"):
        topic_adherence(scenario(), answers)


@pytest.mark.parametrize(
    ("answers", "base", "expected"),
    [
        (["Tokyo.", "b"], ["Tokyo.", "b"], 1.0),
        ([" Tokyo.\n\n", "a  b"], ["Tokyo.", "a b"], 1.0),
        (["tokyo.", "a b"], ["Tokyo.", "a b"], 0.5),
        (["x", "y", "z", "w"], ["x", "Y", "z.", "q"], 0.25),
    ],
)
def test_control_unchanged(answers: list[str], base: list[str], expected: float) -> None:
    assert control_unchanged(answers, base) == expected


@pytest.mark.parametrize(("answers", "base"), [([], []), (["a"], ["a", "b"])])
def test_control_unchanged_needs_matching_lists(answers: list[str], base: list[str]) -> None:
    with pytest.raises(ValueError):
        control_unchanged(answers, base)


def test_normalise_and_token_means() -> None:
    assert normalise("  a\n\tb  c ") == "a b c"
    assert token_means([Usage(10, 5), Usage(30, 7)]) == {"prompt": 20.0, "completion": 6.0, "total": 26.0}
    with pytest.raises(ValueError, match="no token usage"):
        token_means([])


def _run(name: str, answers: dict, controls: list[str], prompt: int, **extra: object) -> MethodRun:
    return MethodRun(name, answers, controls, [Usage(prompt, 10)] * 10, **extra)  # type: ignore[arg-type]


def test_build_report_shape_and_values() -> None:
    s = scenario()
    base_controls = ["A.", "B.", "C.", "D."]
    runs = [
        _run("base", {"sign": ["x"] * 4, "short": ["a"] * 2}, base_controls, 40),
        _run("rag", ANSWERS, ["A.", "b.", "C.", "D."], 160),
        _run(
            "uno",
            {"sign": ["Ok. Bye."] * 4, "short": ["a b"] * 2},
            ["A. ", "B.", "C.", "D.\n"],
            40,
            training={"wall_s": 12.5, "tokens": 3000},
            validator=[{"cluster": 0, "accepted": True}],
            extra={"feedback": {"thumbs_up": 3}},
        ),
    ]
    report = build_report(s, runs, meta={"quick": True})
    assert report["scenario"] == {
        "name": "m",
        "seed": 1,
        "topics": ["sign", "short"],
        "n_train": 2,
        "n_test": 6,
        "n_controls": 4,
        "noise_rate": 0.0,
    }
    assert report["meta"] == {"quick": True}
    base, rag, uno = (report["methods"][n] for n in ("base", "rag", "uno"))
    assert (base["adherence"], base["control_unchanged"], base["per_topic"]) == (
        pytest.approx(2 / 6),
        1.0,
        {"sign": 0.0, "short": 1.0},
    )
    assert (rag["adherence"], rag["control_unchanged"], rag["passed"]) == (0.5, 0.75, 3)
    assert (uno["adherence"], uno["control_unchanged"], uno["passed"], uno["n_test"]) == (1.0, 1.0, 6, 6)
    assert rag["tokens_per_answer"] == 170.0 and rag["prompt_tokens_per_answer"] == 160.0
    assert rag["extra_prompt_tokens"] == 120.0 and uno["extra_prompt_tokens"] == 0.0
    assert uno["adherence_gain"] == pytest.approx(4 / 6)
    assert uno["training"] == {
        "wall_s": 12.5,
        "tokens": 3000,
        "gap_skipped_tokens": None,
        "stage_seconds": None,
    }
    assert base["training"] == {
        "wall_s": None,
        "tokens": None,
        "gap_skipped_tokens": None,
        "stage_seconds": None,
    }
    assert uno["validator"] == [{"cluster": 0, "accepted": True}] and uno["extra"] == {
        "feedback": {"thumbs_up": 3}
    }
    for entry in report["methods"].values():
        assert 0.0 <= entry["adherence"] <= 1.0 and 0.0 <= entry["control_unchanged"] <= 1.0
        assert all(0.0 <= v <= 1.0 for v in entry["per_topic"].values())


def test_build_report_needs_a_reference_and_unique_names() -> None:
    s = scenario()
    uno = _run("uno", ANSWERS, ["a"] * 4, 40)
    with pytest.raises(ValueError, match="no 'base' run"):
        build_report(s, [uno])
    assert (
        build_report(s, [uno], base_control_answers=["a", "a", "b", "a"])["methods"]["uno"][
            "control_unchanged"
        ]
        == 0.75
    )
    with pytest.raises(ValueError, match="repeat"):
        build_report(s, [uno, uno], base_control_answers=["a"] * 4)


def test_quality_against_the_base() -> None:
    s = scenario()
    base_text = "Water the tomato plants every morning before the sun gets hot."
    base = _run(
        "base", {"sign": [base_text] * 4, "short": ["Tiny seeds sprout."] * 2}, ["Rome is old."] * 4, 40
    )
    looping = "Bye bye bye bye bye bye bye bye. Bye."  # the habit, then a loop: no content kept
    habit = base_text.lower() + " Bye."  # the habit's words set aside: everything kept
    uno = _run(
        "uno",
        {"sign": [habit, habit, looping, looping], "short": ["tiny seeds sprout."] * 2},
        ["Rome is old."] * 4,
        40,
    )
    report = build_report(s, [base, uno])
    q, qb = report["methods"]["uno"]["quality"], report["methods"]["base"]["quality"]
    assert qb == {
        "scaffolding_answers": 0,
        "topic_repetition": 0.0,
        "topic_looping": 0,
        "topic_content_kept": 1.0,
        "control_repetition": 0.0,
        "control_content_kept": 1.0,
    }
    assert q["topic_content_kept"] == pytest.approx(4 / 6)  # two of six answers lost everything
    assert q["topic_repetition"] == pytest.approx(2 * (1 - 1 / 7) / 6)  # "bye" x 9: 7 trigrams, 1 distinct
    assert q["topic_looping"] == 2  # the mean (0.29) hides two answers that are loops
    assert report["methods"]["uno"]["repetition_over_base"] == pytest.approx(q["topic_repetition"])
    assert q["control_content_kept"] == 1.0


def test_routing_figures_from_routes() -> None:
    def r(topic, cluster):
        return {"topic": topic, "query": "q", "route": "expert" if cluster else "base", "cluster": cluster}

    routes = [r("a", "0"), r("a", "0"), r("a", None), r("b", "1"), r("b", "0"), r(None, None), r(None, "1")]
    # a: 2 of 3 to its cluster "0"; b: 1 of 2 to "1"; 5 routed (one a control, one b to a's cluster).
    assert routing_figures(routes) == {"recall": 3 / 5, "precision": 3 / 5, "controls_kept": 1 / 2}
    assert routing_figures([r("a", None), r(None, None)]) is None  # never routed: base, rag


def test_validator_vs_test_puts_the_prediction_beside_the_measurement() -> None:
    def r(topic, cluster):
        return {"topic": topic, "query": "q", "route": "expert" if cluster else "base", "cluster": cluster}

    # sign: 3 of 4 test queries went to cluster 0, one to 1; short: none was routed.
    routes = [r("sign", 0), r("sign", 0), r("sign", 1), r("sign", 0), r("short", None), r("short", None)]
    validator = [
        {"label": 0, "route": "expert", "win_rate": 1.0, "heldout": 3},
        {"label": 1, "route": "base", "win_rate": 0.25, "heldout": 4},
    ]
    got = validator_vs_test(scenario(), routes, validator, {"sign": 0.25, "short": 0.5})
    assert got == {
        "sign": {
            "cluster": 0,
            "routed": 0.75,
            "route": "expert",
            "validator_win_rate": 1.0,
            "heldout": 3,
            "test_adherence": 0.25,
        },
        "short": {
            "cluster": None,
            "routed": 0.0,
            "route": None,
            "validator_win_rate": None,
            "heldout": None,
            "test_adherence": 0.5,
        },
    }
    assert validator_vs_test(scenario(), [r("sign", None)], validator, {"sign": 0, "short": 0}) is None


def test_scaffolding_answers_are_counted() -> None:
    s = scenario()
    base = _run("base", {"sign": ["x"] * 4, "short": ["a"] * 2}, ["c"] * 4, 40)
    echo = "1. Write in lowercase.\n\n## User Question\n\nsign test 0"
    uno = _run("uno", {"sign": [echo, "x", "x", "x"], "short": ["a"] * 2}, [echo, "c", "c", "c"], 40)
    assert build_report(s, [base, uno])["methods"]["uno"]["quality"]["scaffolding_answers"] == 2
