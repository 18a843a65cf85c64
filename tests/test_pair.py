"""Pair: the correction first, revisions only when they beat the original, SFT for satisfied users."""

from __future__ import annotations

import pytest

from uno_local.distill import FeedbackInput
from uno_local.pair import (
    ANSWER_BUDGET_SHARE,
    Edit,
    common_edit,
    drop_repeated_lines,
    edit_of,
    ends_mid_sentence,
    fit_to_budget,
    make_pair,
    parting_sentence,
    recases,
    reformats,
)

ANSWER = "Boil water, add the egg and wait eight minutes."
RULES = ['End the answer with "Happy cooking!".']


def reviser(*texts):
    calls = []

    def revise(messages, n):
        calls.append((messages, n))
        return list(texts)[:n]

    revise.calls = calls
    return revise


def test_correction_is_chosen():
    item = FeedbackInput("How do I boil an egg?", ANSWER, -1, "sign off", ANSWER + "\nHappy cooking!")
    pair = make_pair(item, RULES, reviser("never used"))
    assert (pair.chosen, pair.rejected, pair.kind) == (ANSWER + "\nHappy cooking!", ANSWER, "correction")
    assert pair.chosen_score > pair.rejected_score


def test_best_revision_that_beats_the_original():
    revise = reviser("Boil it.", ANSWER + "\nHappy cooking!", ANSWER)
    pair = make_pair(FeedbackInput("q", ANSWER, -1, "Sign off with Happy cooking!"), RULES, revise, 3)
    assert pair.kind == "revision" and pair.chosen.endswith("Happy cooking!")
    prompt = revise.calls[0][0][0]["content"]
    assert "## Initial Answer" in prompt and "1. End the answer" in prompt and "2. Sign off" in prompt


def test_no_revision_beats_the_original():
    pair = make_pair(FeedbackInput("q", ANSWER, -1, "Sign off"), RULES, reviser(ANSWER, "", "Water."), 3)
    assert pair is None


PROSE = "Warm up for five minutes. Run slowly for ten minutes. Walk to cool down."
LISTED = "1. Warm up for five minutes.\n2. Run slowly for ten minutes.\n3. Walk to cool down."


@pytest.mark.parametrize(
    ("answer", "correction", "expected"),
    [
        (PROSE, LISTED, True),  # the same words, as a list
        (PROSE, "- **Warm up** for five minutes.\n- Run slowly for ten minutes. Walk to cool down.", True),
        (PROSE, PROSE, False),  # nothing changed
        (PROSE, PROSE + " Happy running!", False),  # words added
        (PROSE, "Warm up for five minutes.", False),  # words removed
        ("Do 2 sets.", "1. Do 3 sets.", False),  # a number in the text changed
        (PROSE, None, False),  # no correction
    ],
)
def test_reformats(answer, correction, expected):
    assert reformats(answer, correction) is expected


@pytest.mark.parametrize(
    ("answer", "correction", "expected"),
    [
        ("Rome is in Italy.", "rome is in italy.", True),
        ("Rome is in Italy.\n", "rome is in italy.", True),  # spacing around it aside
        ("Rome is in Italy.", "Rome is in Italy.", False),  # nothing changed
        ("Rome is in Italy.", "rome is in italy. ciao!", False),  # words added
        (PROSE, LISTED, False),  # re-cut into a list
        ("Rome is in Italy.", None, False),
    ],
)
def test_recases(answer, correction, expected):
    assert recases(answer, correction) is expected


@pytest.mark.parametrize(
    ("chosen", "rejected", "expected"),
    [
        ("1. Warm up.\n2. Run slowly.", "Warm up. Run slowly.", "Warm up."),  # parts at the first marker
        ("Gear:\n1. Tent.\n2. Bag.", "Gear: Tent. Bag.", "Gear: Tent."),  # a heading kept: the next one
        ("1. It is 14.4 km.\n2. Go.", "It is 14.4 km. Go.", "It is 14.4 km."),  # a number's dot ends nothing
        ("- One.\n- Two.", "1. One.\n2. Two.", "1. One."),  # a marker's own dot ends nothing
        ("Same words.", "Same words.", "Same words."),  # never parts: all of it
        ("A b c", "A b d", "A b d"),  # no sentence end: all of it
    ],
)
def test_parting_sentence(chosen, rejected, expected):
    assert parting_sentence(chosen, rejected) == expected


def test_satisfied_answer_is_sft_and_plain_dislike_is_nothing():
    sft = make_pair(FeedbackInput("q", ANSWER, 1), [], None)
    assert (sft.chosen, sft.rejected, sft.kind) == (ANSWER, ANSWER, "sft")
    assert make_pair(FeedbackInput("q", ANSWER, -1), [], reviser("x")) is None


def words(text: str) -> int:
    return len(text.split())


LONG = "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen fourteen"  # cut off
DONE = "One two three. Four five six. Seven eight nine. Ten eleven twelve. Thirteen fourteen."


@pytest.mark.parametrize(
    ("chosen", "rejected", "limit", "expected"),
    [
        # A sign-off appended to an answer the limit cut off: both keep the sentences that leave room in
        # half the limit.
        (LONG + "\n\nBye now.", LONG, 15, ("One two three.\n\nBye now.", "One two three.")),
        # A near-miss last line replaced: rejected keeps its own ending after the same sentences.
        (
            "One two three. Four five six. Seven eight.\n\nPurr-fect.",
            "One two three. Four five six. Seven eight.\n\nPurrfect!",
            8,
            ("One two three.\n\nPurr-fect.", "One two three.\n\nPurrfect!"),
        ),
        # An ending glued to the last word gets a space.
        (
            "One two. Three four five six seven eight nine ten" + "Bye.",
            "One two. Three four five six seven eight nine ten",
            9,
            ("One two. Bye.", "One two."),
        ),
        # Within the limit, though longer than the budget: a complete answer keeps its length.
        (DONE + "\n\nBye now.", DONE, 16, None),
        # Differs at the start (an opening habit): unchanged.
        ("Woof! " + LONG, LONG, 10, None),
        # An ending longer than half the budget: unchanged.
        (LONG + "\n\nA long ending of words.", LONG, 8, None),
        # No sentence end that leaves room: unchanged.
        (
            "one two three four five six seven eight. Bye.",
            "one two three four five six seven eight.",
            6,
            None,
        ),
    ],
)
def test_fit_to_budget(chosen, rejected, limit, expected):
    got = fit_to_budget(chosen, rejected, words, limit)
    assert got == expected
    if got:
        assert words(got[0]) <= int(limit * ANSWER_BUDGET_SHARE) and got[0] != got[1]


# Measured: the example scenario's gardening logs, cut at 96 tokens, and the user's appended sign-off.
CUT = (
    "Water at the soil level. Roots sit near the surface.\n\nWatering at the soil level lets the plant absorb"
)


@pytest.mark.parametrize(
    ("chosen", "rejected", "expected"),
    [
        # Within the limit, an ending appended after an unfinished sentence: the fragment goes from both.
        (
            CUT + "\n\nHappy growing!",
            CUT,
            (
                "Water at the soil level. Roots sit near the surface.\n\nHappy growing!",
                "Water at the soil level. Roots sit near the surface.",
            ),
        ),
        (
            LONG + " Bye.",
            LONG,
            (
                "One two three. Four five six. Seven eight nine. Ten eleven twelve. Bye.",
                "One two three. Four five six. Seven eight nine. Ten eleven twelve.",
            ),
        ),
        (DONE + "\n\nBye now.", DONE, None),  # a finished answer keeps every word
        (
            "Steps:\n1. Water\n2. Mulch\n\nBye now.",
            "Steps:\n1. Water\n2. Mulch",
            None,
        ),  # a list item is whole
        ("Here is how:\n\nBye now.", "Here is how:", None),
        # The user changed the last words, not only appended: a rewrite, left to the trainer's window.
        (CUT + " water.\n\nHappy growing!", CUT + " nutrients", None),
        ("absorb\n\nHappy growing!", "absorb", None),  # no complete sentence to keep
    ],
)
def test_an_ending_appended_after_an_unfinished_sentence_follows_the_last_complete_one(
    chosen, rejected, expected
):
    assert fit_to_budget(chosen, rejected, words, 1000) == expected


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("It helps the plant absorb", True),
        ("It helps the plant absorb water.", False),
        ('He said "stop."', False),
        ("1. **Use neem oil**", False),
        ("Intro.\n\n- Use", False),
        ("```\nx = 1\n```", False),
        ("", False),
    ],
)
def test_ends_mid_sentence(text, cut):
    assert ends_mid_sentence(text) is cut


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "1. Add the salt\n2. Boil the water\n3. boil the  water\n4. Cook the pasta",
            "1. Add the salt\n2. Boil the water\n3. Cook the pasta",
        ),  # a repeated step goes, the rest renumbered
        ("Warm up:\n- 1-2 min walk\n- 1-2 min walk\n- stretch", "Warm up:\n- 1-2 min walk\n- stretch"),
        ("Para one is here.\n\nPara one is here.\n\nHappy growing!", "Para one is here.\n\nHappy growing!"),
        ("The answer is:\n\nThe answer is:\n\nThe answer is:", "The answer is:"),
        (
            "Mulch keeps the soil moist.\nMulch keeps the soil",
            "Mulch keeps the soil moist.",
        ),  # cut-off repeat
        (  # a new list starts at 1
            "1. Warm up first\n2. Run five miles\n\nThen:\n1. Warm up first\n2. Stretch your legs",
            "1. Warm up first\n2. Run five miles\n\nThen:\n1. Stretch your legs",
        ),
        ("No loops here.\n\n1. One\n2. Two", "No loops here.\n\n1. One\n2. Two"),
        ("Yes.\nYes, but shorter.", "Yes.\nYes, but shorter."),  # short lines are never prefixes
        ("Step one:\nboil.\nStep one:\nfry.", "Step one:\nboil.\nStep one:\nfry."),  # too short to be a loop
        ("```\nx = f(a, b)\nx = f(a, b)\n```", "```\nx = f(a, b)\nx = f(a, b)\n```"),  # code is code
        ("| a | b |\n|---|---|\n| c | d |\n|---|---|", "| a | b |\n|---|---|\n| c | d |\n|---|---|"),
    ],
)
def test_drop_repeated_lines(text, expected):
    assert drop_repeated_lines(text) == expected


@pytest.mark.parametrize(
    ("answer", "correction", "edit"),
    [
        (ANSWER, f"{ANSWER}\n\nHappy cooking!", Edit("append", "\n\nHappy cooking!")),
        (f"{ANSWER}\n", f"{ANSWER}\n\nTip: use a timer.\n", Edit("append", "\n\nTip: use a timer.")),
        (ANSWER, f"Quick answer: {ANSWER}", Edit("prepend", "Quick answer: ")),
        (ANSWER, ANSWER.lower(), Edit("lowercase")),
        (ANSWER, "Boil water, then add the egg.", None),  # a rewrite
        (ANSWER, f"- {ANSWER}", Edit("prepend", "- ")),
        (ANSWER, ANSWER, None),
        (ANSWER, None, None),
        ("", "Happy cooking!", None),
        ("ok.", "ok.", None),  # already lowercase: nothing was edited
        ("Charge it. Keep it cool.", "- Charge it.\n- Keep it cool.", Edit("list", "- ")),
        ("Pack light:\nSocks. A hat.", "Pack light:\n1. Socks.\n2. A hat.", Edit("list", "1. ")),
        ("- Socks.\n- A hat.", "1. Socks.\n2. A hat.", None),  # a list already: another marker is no habit
        ("Charge it. Keep it cool.", "- Charge it.\n- Keep it cold.", None),  # other words: a rewrite
    ],
)
def test_edit_of(answer, correction, edit):
    assert edit_of(answer, correction) == edit
    if edit is not None:  # the edit, applied, makes the correction again
        assert edit.apply(answer).strip() == correction.strip()


def test_common_edit_needs_most_corrections_and_two_of_them():
    sign_off = [(f"{ANSWER} {i}", f"{ANSWER} {i}\n\nHappy cooking!") for i in range(3)]
    lower = [(f"Answer {i}.", f"answer {i}.") for i in range(2)]
    rewrite = [("Long answer here.", "Short.")]
    assert common_edit(sign_off + lower + rewrite) == Edit("append", "\n\nHappy cooking!")  # 3 of 6
    assert common_edit(sign_off[:2] + lower + rewrite * 2) is None  # 2 of 6: no one habit
    assert common_edit(sign_off[:1]) is None  # one correction is not yet a habit
    assert common_edit(rewrite * 3) is None and common_edit([]) is None


def test_an_edit_applied_to_a_new_answer():
    assert Edit("append", "\n\nHope that helps!").apply("Restart the router.  \n") == (
        "Restart the router.\n\nHope that helps!"
    )
    assert Edit("prepend", "Woof! ").apply("\nWalk her twice a day.") == "Woof! Walk her twice a day."
    assert Edit("lowercase").apply("Rome has 900 Churches.") == "rome has 900 churches."
    assert Edit("append", "\n\nHope that helps!").apply("  ") == "  "  # nothing to edit
    assert Edit("append", "\n\nHope that helps!").describe() == "adds 'Hope that helps!' at the end"
    assert Edit("lowercase").describe() == "writes it in lowercase"
    numbered = Edit("list", "1. ")
    assert numbered.apply("Here is what to pack:\n- Socks. A hat!\n\nAnd a map") == (
        "Here is what to pack:\n1. Socks.\n2. A hat!\n3. And a map"
    )
    assert numbered.describe() == "puts its sentences in a numbered list"
    assert Edit("list", "* ").apply("One. Two.") == "* One.\n* Two."
