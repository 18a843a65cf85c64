"""Answer quality, pure: repetition share, content kept against the base, prompt scaffolding."""

from __future__ import annotations

import pytest

from uno_local.quality import content_kept, repetition_share, revision_problem, scaffolding

BASE = "Preheat the oven to 200 degrees. Roast the carrots with olive oil and salt for thirty minutes."


@pytest.mark.parametrize(
    "text, share",
    [
        ("", 0.0),
        ("one two", 0.0),  # fewer words than n
        ("the cat sat on the mat", 0.0),
        ("a bit of a bit of a bit of", 4 / 7),  # 7 trigrams, 3 distinct
        ("Go now. Go now. Go now.", 2 / 4),  # case and punctuation aside: 4 trigrams, 2 distinct
    ],
)
def test_repetition_share(text, share):
    assert repetition_share(text) == pytest.approx(share)


@pytest.mark.parametrize(
    "answer, ignore, kept",
    [
        (BASE, (), 1.0),
        (BASE.lower(), (), 1.0),  # the lowercase habit keeps everything
        (
            "- Preheat the oven to 200 degrees.\n- Roast the carrots with olive oil and salt for thirty minutes.",
            (),
            1.0,
        ),
        ("Chef's tip: " + BASE, ("Chef's tip:",), 1.0),  # the habit's words are set aside
        ("Preheat the oven to 200 degrees.", (), 4 / 11),  # preheat, oven, 200, degrees of 11
        ("Something else entirely.", (), 0.0),
    ],
)
def test_content_kept(answer, ignore, kept):
    assert content_kept(BASE, answer, ignore) == pytest.approx(kept)


@pytest.mark.parametrize(
    "text, echoes, found",
    [
        (BASE, ["How do I roast carrots?"], None),
        ("## User Question\n\nHow do I roast carrots?", [], "user question"),
        ("Text\n## Suggestion\n1. x", [], "suggestion"),
        ("Output only the full revised answer, please.", [], "the revision prompt's instructions"),
        ("How do I roast carrots?\n" + BASE, ["How do I roast carrots?"], "a repeated prompt line"),
        ("1. Write the answer in lowercase.\n" + BASE, ["Write the answer in lowercase."], "a repeated"),
        ("Roast them.", ["Roast them."], None),  # a short echo could be a real answer
    ],
)
def test_scaffolding(text, echoes, found):
    got = scaffolding(text, echoes)
    assert got == found if found is None else got.startswith(found)


@pytest.mark.parametrize(
    "revised, problem",
    [
        (BASE.lower(), None),
        ("", "empty"),
        ("## Initial Answer\n" + BASE, "echoes its prompt"),
        ("Roast them.", "too short"),
        ("roast the carrots " * 12, "repeats itself"),
    ],
)
def test_revision_problem(revised, problem):
    got = revision_problem(revised, "How do I roast carrots?", BASE, ["Write in lowercase."])
    assert got is None if problem is None else problem in got


def test_a_brief_revision_of_a_long_draft_is_plausible():
    draft = " ".join(
        f"Point {i}: water the plant at dawn and check the soil." for i in range(20)
    )  # 220 words
    brief = "Water at dawn, and only when the top of the soil is dry: roots rot in wet soil."  # 18 words
    assert revision_problem(brief, "How do I water a fern?", draft, ["Keep it under 40 words."]) is None
    assert "too short" in revision_problem("Water it.", "How do I water a fern?", draft, [])


@pytest.mark.parametrize(
    ("text", "looping"),
    [
        ("Purr-fect. (laughs)\n\n" * 12, True),  # measured on pet-care's cats Expert
        ('- "Adele"\n' + "- - - -\n" * 40, True),  # measured on its aquarium Expert: no words to repeat
        ("- Rinse the filter.\n- Change a third of the water.\n- Test the pH.\n- Feed less.", False),
        ("Woof! Crate training takes patience. Start with short stays and praise every calm minute.", False),
        ("a type of animal that is " * 8, True),
        # measured on pet-care's aquarium Expert (session 34): every 3-gram new, and no word a word
        ('- "-1-1-1-2-1-1-3-2-2-3-' + "-".join(str(i) for i in range(4, 52)), True),
        # numbers inside an answer are words of it
        (
            "Cycle the tank for 4 to 6 weeks: test ammonia on day 1, 3, 7, 14, 21 and 28, and add fish "
            "only when ammonia and nitrite read 0 for 7 days in a row.",
            False,
        ),
        ("1, 2, 3", False),  # too short to tell
    ],
)
def test_loops(text, looping):
    from uno_local.quality import loops

    assert loops(text) is looping
