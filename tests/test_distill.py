"""Distill and predict: constrained-JSON parsing, validation against the feedback, fallbacks."""

from __future__ import annotations

import json

import pytest

from uno_local.distill import (
    FeedbackInput,
    clean,
    correction_rules,
    distill_rules,
    is_implicit_feedback,
    parse_rules,
    predict_rules,
    sentences,
)

ANSWER = "Boil water, add the egg and wait eight minutes. Then cool it in cold water."


def fixed(raw: str):
    """A stand-in for the model: always returns `raw` (the real model is exercised end to end)."""
    calls = []

    def generate(messages, schema):
        calls.append((messages, schema))
        return raw

    generate.calls = calls
    return generate


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"rules": ["End with a sign-off."]}', ["End with a sign-off."]),
        ('{"rules": []}', []),
        ('{"rules": ["a", 3]}', None),
        ('{"rules": "x"}', None),
        ('{"rules": ["unterminated', None),
        ("[]", None),
        ("", None),
    ],
)
def test_parse_rules(raw, expected):
    assert parse_rules(raw) == expected


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (["rule1", "Rule 2", "Use short sentences.", "use short sentences.", "ok"], ["Use short sentences."]),
        (["...", "- Keep it brief please -"], ["Keep it brief please"]),
        ([f"Rule number {i} here" for i in range(9)], [f"Rule number {i} here" for i in range(5)]),
    ],
)
def test_clean(rules, expected):
    assert clean(rules) == expected


@pytest.mark.parametrize(
    ("answer", "correction", "expected"),
    [
        (ANSWER, ANSWER + "\nHappy cooking!", ['End the answer with "Happy cooking!".']),
        (ANSWER, "Chef's note: " + ANSWER, ['Start the answer with "Chef\'s note:".']),
        (ANSWER, "Boil it eight minutes.", ["Keep the answer under 5 words."]),
        (ANSWER, ANSWER.lower(), ["Write the answer in lowercase."]),
        (ANSWER, "1. Boil water.\n2. Add the egg.\n3. Wait eight minutes.", ["Answer as a numbered list."]),
        (ANSWER, ANSWER, []),
        (ANSWER, None, []),
    ],
)
def test_correction_rules(answer, correction, expected):
    assert correction_rules(answer, correction) == expected


def test_model_rules_about_the_feedback_are_kept():
    gen = fixed(json.dumps({"rules": ["Sign off with Happy cooking.", "Boil water and add the egg."]}))
    result = distill_rules(
        FeedbackInput("How do I boil an egg?", ANSWER, -1, "Please sign off with Happy cooking!"), gen
    )
    assert result.source == "model"
    assert result.rules == ["Sign off with Happy cooking."]  # the rule copied from the answer is dropped
    assert gen.calls[0][1]["properties"]["rules"]["type"] == "array"  # asked under the JSON schema


@pytest.mark.parametrize(
    "raw",
    [
        '{"rules": ["rule1", "rule2"]}',
        '{"rules": ["Boil water, add the egg."]}',
        '{"rules": ["unterminated',
        "",
    ],
)
def test_unusable_model_output_falls_back_to_the_comment(raw):
    comment = "Too long. Keep it under 40 words please."
    result = distill_rules(FeedbackInput("Why did Rome fall?", ANSWER, -1, comment), fixed(raw))
    assert result.source == "fallback"
    assert result.rules == ["Too long.", "Keep it under 40 words please."]


def test_satisfied_user_gets_no_rules_and_no_model_call():
    gen = fixed('{"rules": ["should not be asked"]}')
    result = distill_rules(FeedbackInput("q", ANSWER, rating=1), gen)
    assert (result.rules, result.source, gen.calls) == ([], "satisfied", [])


def test_correction_without_comment_gives_rules_without_the_model():
    gen = fixed("{}")
    result = distill_rules(FeedbackInput("q", ANSWER, -1, correction=ANSWER + "\nHappy cooking!"), gen)
    assert result.rules == ['End the answer with "Happy cooking!".'] and gen.calls == []


def test_noise_comment_gives_nothing():
    result = distill_rules(FeedbackInput("q", ANSWER, -1, "meh"), fixed('{"rules": []}'))
    assert result.rules == [] and result.source == "none"


@pytest.mark.parametrize(
    ("next_user", "expected"),
    [
        ("Shorter please.", True),
        ("No, answer in French instead.", True),
        ("What is the capital of Peru?", False),
        (None, False),
        ("too " * 50, False),
    ],
)
def test_implicit_feedback(next_user, expected):
    assert is_implicit_feedback(next_user) is expected


def test_implicit_feedback_is_distilled():
    result = distill_rules(
        FeedbackInput("q", ANSWER, None, None, None, "Shorter please, just two sentences."), fixed("not json")
    )
    assert result.rules == ["Shorter please, just two sentences."]


def test_predict_rules_caps_and_cleans():
    raw = json.dumps({"rules": ["Explain the steps clearly.", "rule2", "Give the cooking time."]})
    result = predict_rules("How do I boil an egg?", fixed(raw))
    assert result.rules == ["Explain the steps clearly.", "Give the cooking time."]
    assert predict_rules("q", None).rules == []


def test_sentences_drop_pleasantries():
    assert sentences("Thanks! Use bullet points.\nmeh\nAlso add a summary at the end.") == [
        "Use bullet points.",
        "Also add a summary at the end.",
    ]
