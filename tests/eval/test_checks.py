"""Every check type on passing and failing answers; every rewrite makes any answer pass its check."""

from __future__ import annotations

import random

import pytest

from uno_local.eval.checks import (
    CHECK_PARAMS,
    apply_rewrite,
    check,
    first_failing_probe,
    rewrite,
    truncate_words,
)
from uno_local.eval.scenario import Check

ENDS = Check("ends_with", {"value": "Happy growing!"})
STARTS = Check("starts_with", {"value": "Safety first:"})
CONTAINS = Check("contains", {"value": "little and  often"})
NOT_CONTAINS = Check("not_contains", {"value": "as an AI"})
NOT_AB = Check("not_contains", {"value": "ab"})
MAX5 = Check("max_words", {"n": 5})
NUMBERED = Check("numbered_list", {"min_items": 3})
BULLETS = Check("bullet_list", {"min_items": 4})
LOWER = Check("lowercase", {})
SERVES = Check("regex", {"pattern": r"(?m)^Serves: \d+\s*$"}, {"type": "append", "text": "\n\nServes: 2"})
TLDR = Check("regex", {"pattern": r"^TL;DR"}, {"type": "prepend", "text": "TL;DR: see below.\n"})
NO_BANG = Check("not_regex", {"pattern": "!"}, {"type": "replace", "pattern": "!+", "with": "."})
SHORT_RE = Check("regex", {"pattern": r"^\s*(\S+\s+){0,2}\S*\s*$"}, {"type": "truncate_words", "n": 3})

CASES = [
    (ENDS, "Water weekly.\nHappy growing!", True),
    (ENDS, "Water weekly. Happy growing!  \n\t", True),
    (ENDS, "Water weekly. happy growing!", False),
    (ENDS, "Happy growing! Water weekly.", False),
    (ENDS, "", False),
    (STARTS, "  \nSafety first: unplug it.", True),
    (STARTS, "safety first: unplug it.", False),
    (STARTS, "Unplug it. Safety first:", False),
    (CONTAINS, "Study daily. Little AND\noften works.", True),
    (CONTAINS, "little and often", True),
    (CONTAINS, "Study a little, and often.", False),
    (NOT_CONTAINS, "Here is the answer.", True),
    (NOT_CONTAINS, "As An Ai, I think so.", False),
    (NOT_CONTAINS, "as\nan   AI model", False),
    (MAX5, "one two three four five", True),
    (MAX5, "  one\ttwo\n\nthree  ", True),
    (MAX5, "one two three four five six", False),
    (MAX5, "", True),
    (NUMBERED, "Steps:\n1. a\n2) b\n  3. c", True),
    (NUMBERED, "1. a\n2. b", False),
    (NUMBERED, "1.a\n2.b\n3.c", False),
    (NUMBERED, "1. a 2. b 3. c", False),
    (BULLETS, "- a\n* b\n• c\n  - d", True),
    (BULLETS, "- a\n- b\n- c", False),
    (BULLETS, "-a\n-b\n-c\n-d", False),
    (LOWER, "all lowercase, 123 ✓ ℂ", True),
    (LOWER, "", True),
    (LOWER, "Paris is lovely", False),
    (LOWER, "straße İ", False),
    (SERVES, "Cook it.\nServes: 4", True),
    (SERVES, "Cook it. Serves: 4", False),
    (SERVES, "Cook it.\nServes 4", False),
    (TLDR, "TL;DR: yes", True),
    (TLDR, " TL;DR: yes", False),
    (NO_BANG, "Dear host, thanks.", True),
    (NO_BANG, "Thanks!", False),
    (SHORT_RE, "two words", True),
    (SHORT_RE, "one two three four", False),
]


@pytest.mark.parametrize(("spec", "answer", "expected"), CASES)
def test_check(spec: Check, answer: str, expected: bool) -> None:
    assert check(answer, spec) is expected


REWRITES = [
    (ENDS, "Water weekly.  \n", "Water weekly.\n\nHappy growing!"),
    (ENDS, "Water weekly.\n\nhappy growing.", "Water weekly.\n\nHappy growing!"),
    (ENDS, "   ", "Happy growing!"),
    (STARTS, "Unplug the toaster.", "Safety first: Unplug the toaster."),
    (STARTS, "  safety FIRST: unplug it.", "Safety first: unplug it."),
    (STARTS, "", "Safety first:"),
    (CONTAINS, "Practise daily.", "Practise daily.\n\nlittle and often"),
    (NOT_CONTAINS, "As an AI, I cannot cook. But AS AN AI I can help.", "I cannot cook. But I can help."),
    (NOT_AB, "aabb", ""),
    (NOT_AB, "x aab b y", "x a b y"),
    (MAX5, "One two three. Four five six seven.", "One two three."),
    (MAX5, "One two three four, five six.", "One two three four, five."),
    (MAX5, "One, two, three, four, five, six.", "One, two, three, four, five."),
    (NUMBERED, "Warm up. Run slowly. Stretch after.", "1. Warm up.\n2. Run slowly.\n3. Stretch after."),
    (NUMBERED, "Here is how:\n- Warm up\n- Run", "Here is how:\n1. Warm up.\n2. Run.\n3. …"),
    (
        NUMBERED,
        "Mix the flour, add the eggs, then bake it.",
        "1. Mix the flour.\n2. Add the eggs.\n3. Then bake it.",
    ),
    (NUMBERED, "Run every day", "1. Run every day.\n2. …\n3. …"),
    (
        NUMBERED,
        "Warm up slowly and then run for ten minutes",
        "1. Warm up slowly.\n2. And then run for ten minutes.\n3. …",
    ),
    (NUMBERED, "", "1. …\n2. …\n3. …"),
    (NUMBERED, "Mix, stir, bake", "1. Mix.\n2. Stir.\n3. Bake."),
    (
        NUMBERED,
        "Pack light clothes and a warm jacket for the evenings",
        "1. Pack light clothes.\n2. And a warm jacket for the evenings.\n3. …",
    ),
    (BULLETS, "1. Sun. 2. Water.\n3) Soil. Patience.", "- Sun.\n- Water.\n- Soil.\n- Patience."),
    (LOWER, "Paris Is ÉTÉ", "paris is été"),
    (SERVES, "Boil pasta.\n", "Boil pasta.\n\nServes: 2"),
    (SERVES, "", "Serves: 2"),
    (TLDR, "Long answer.", "TL;DR: see below.\nLong answer."),
    (NO_BANG, "Hi!! Thanks for everything!", "Hi. Thanks for everything."),
    (SHORT_RE, "One two three four five.", "One two three."),
]


@pytest.mark.parametrize(("spec", "answer", "expected"), REWRITES)
def test_rewrite_exact(spec: Check, answer: str, expected: str) -> None:
    out = rewrite(answer, spec)
    assert out == expected
    assert check(out, spec)


EDGE_ANSWERS = [
    "",
    " ",
    "\n\t  \r\n",
    "Yes",
    "One.",
    "Happy growing",
    "happy growing!",
    "Safety first",
    "as an AI as an AI as an AI",
    "asas an AIan AI",
    "a\u00a0b\u3000c\u2028d\x85e",
    "1.\n2.\n- \n* ",
    "Ünïcödé ÆØÅ ß İstanbul — 日本語の答え。 🚀 ℂ",
    "!!! ??? ... ,,, ;;; :::",
    "Steps:",
    "Here is how: mix, stir, bake, cool, serve, and enjoy it all.",
    " ".join(["word"] * 2000),
    "Sentence one. " * 300,
    "\n".join(f"{i}) item {i}" for i in range(1, 3)),
    "- a\n- b\n- c",
    "AS AN AI! LOUD ANSWER!!!",
    "Serves: x\nServes:2",
]
SPECS = [
    ENDS,
    STARTS,
    CONTAINS,
    NOT_CONTAINS,
    NOT_AB,
    MAX5,
    Check("max_words", {"n": 1}),
    NUMBERED,
    Check("numbered_list", {"min_items": 1}),
    Check("numbered_list", {"min_items": 12}),
    BULLETS,
    LOWER,
    Check("ends_with", {"value": "Bon appétit!"}),
    Check("starts_with", {"value": "日本:"}),
    Check("contains", {"value": "Little and often."}),
    Check("not_contains", {"value": "!"}),
    SERVES,
    TLDR,
    NO_BANG,
    SHORT_RE,
]


def _fuzz(n: int) -> list[str]:
    # Seeded random strings over the characters the checks care about: markers, punctuation, odd spaces.
    rng = random.Random(1234)
    alphabet = "abc ABC xyz\n\t.!?,;:-*•1)" + "İßΣ日🚀\u00a0\u2028\u3000\x85ℂ" + "as an AI "
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_specs_cover_every_check_type() -> None:
    assert {s.type for s in SPECS} == set(CHECK_PARAMS)


@pytest.mark.parametrize(
    "spec", SPECS, ids=lambda s: f"{s.type}-{'-'.join(map(str, s.params.values()))[:20]}"
)
def test_rewrite_always_satisfies_check(spec: Check) -> None:
    for answer in EDGE_ANSWERS + _fuzz(300):
        out = rewrite(answer, spec)
        assert check(out, spec), (answer, out)
        if check(answer, spec):
            assert out == answer  # a passing answer is left alone


@pytest.mark.parametrize(
    ("spec", "answer", "expected"),
    [
        ({"type": "append", "text": " (source: notes)"}, "Fact.  ", "Fact. (source: notes)"),
        ({"type": "append", "text": "\n\nEnd"}, "  ", "End"),
        ({"type": "prepend", "text": "Note: "}, "  fact", "Note: fact"),
        (
            {"type": "replace", "pattern": r"(\d+) km", "with": r"\1 kilometres"},
            "5 km or 10 km",
            "5 kilometres or 10 kilometres",
        ),
        ({"type": "replace", "pattern": "x", "with": ""}, "no match", "no match"),
        ({"type": "truncate_words", "n": 2}, "a b c", "a b."),
        ({"type": "truncate_words", "n": 2}, "a b", "a b"),
    ],
)
def test_apply_rewrite(spec: dict, answer: str, expected: str) -> None:
    assert apply_rewrite(answer, spec) == expected


@pytest.mark.parametrize(
    ("answer", "n", "expected"),
    [
        ("a b c d e f", 3, "a b c."),
        ("First point. Second point here.", 4, "First point."),
        ("One two three four, - five", 4, "One two three four."),
        ("Is it? Yes it is, really.", 4, "Is it?"),
        ("Is it? Yes it is, really.", 6, "Is it? Yes it is, really."),
        ("A b c. D e f g h i.", 8, "A b c. D e f g h."),
        ("- - - -", 1, ""),
    ],
)
def test_truncate_words(answer: str, n: int, expected: str) -> None:
    assert truncate_words(answer, n) == expected


def test_probe_catches_a_rewrite_that_does_not_fix() -> None:
    weak = Check("not_regex", {"pattern": "!"}, {"type": "replace", "pattern": "!!", "with": "."})
    assert first_failing_probe(weak) == "Water them twice a week. Check the soil first! Is it dry?"
    assert first_failing_probe(NO_BANG) is None
    assert first_failing_probe(SERVES, ("Serves 3!",)) is None
