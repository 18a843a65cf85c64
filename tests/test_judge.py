"""The deterministic judge: edit-aware scores, rule cues, BLEU, gates, win-rate counting, shipping."""

from __future__ import annotations

import pytest

from uno_local.judge import (
    JudgeCase,
    Trial,
    best_epoch,
    bleu,
    bleu_gate,
    judge_trial,
    length_gate,
    rule_cues,
    score,
    score_margin,
    ship_decision,
    win_rate,
)

WATER = (
    "Water tomato plants deeply once or twice a week, and more often in hot weather. "
    "Check that the top inch of soil is dry before you water again."
)
ROME = (
    "The Roman Empire fell for many reasons. Its economy weakened under heavy taxes and inflation. "
    "Its armies relied on foreign mercenaries. Political instability brought dozens of emperors in a few "
    "decades. Finally, invasions by Goths and Vandals overwhelmed the western provinces in 476."
)
SIGN_OFF = JudgeCase("How often should I water tomato plants?", WATER, WATER + "\nHappy growing!")
CUT = JudgeCase(
    "Why did the Roman Empire fall?",
    ROME,
    "The Roman Empire fell for many reasons: a weak economy, unreliable armies and invasions.",
)


@pytest.mark.parametrize(
    "case, better, worse",
    [
        # The user's added sign-off in a reworded answer beats the unchanged base answer.
        (
            SIGN_OFF,
            "Tomatoes need a deep soak about twice a week, more during a heatwave. Let the top of the soil "
            "dry out between waterings.\nHappy growing!",
            WATER,
        ),
        (SIGN_OFF, SIGN_OFF.correction, WATER),
        # The user cut the answer to one sentence: a short answer beats the long base answer...
        (CUT, "Rome fell because of a weak economy, political chaos and barbarian invasions.", ROME),
        # ...and the base answer beats an even longer one.
        (CUT, ROME, ROME + " It is a fascinating topic with many more details worth exploring further."),
    ],
)
def test_edit_aware_score_prefers_what_the_user_did(case, better, worse):
    assert score(better, case).value > score(worse, case).value


@pytest.mark.parametrize("case", [SIGN_OFF, CUT])
def test_the_correction_scores_1_and_the_original_low(case):
    assert score(case.correction, case).value == pytest.approx(1.0)
    assert score(case.original, case).value < 0.2


def test_scores_stay_in_range_with_explanations():
    for case in (SIGN_OFF, CUT, JudgeCase("q", WATER, None, ["Keep it under 10 words."])):
        for answer in ("", "x", WATER, ROME, "1. a\n2. b"):
            result = score(answer, case)
            assert 0.0 <= result.value <= 1.0 and result.explanation


@pytest.mark.parametrize(
    "correction, rules",
    [(None, []), (None, ["meh", "I don't know, something feels off."]), (WATER, [])],  # no edit, no cue
)
def test_neutral_without_any_signal(correction, rules):
    result = score("anything at all", JudgeCase("q", WATER, correction, rules))
    assert result.value == 0.5 and "neutral" in result.explanation


LIST = "1. Warm up for five minutes.\n2. Do ten slow squats.\n3. Stretch your legs."
PROSE = "Warm up for five minutes, then do ten slow squats and stretch your legs afterwards."


@pytest.mark.parametrize(
    "rule, answer, expected",
    [
        ("End every gardening answer with the line 'Happy growing!'", WATER + " Happy growing!", 1.0),
        ("End every gardening answer with the line 'Happy growing!'", "Happy growing! " + WATER, 0.0),
        ("You forgot to sign off with Happy growing!", WATER + "\nHappy growing!", 1.0),  # unquoted
        ("End it with Happy growing! please.", WATER, 0.0),
        ('Start with "Sure!"', "Sure! Here you go.", 1.0),
        ('Start with "Sure!"', "Here you go. Sure!", 0.0),
        ('Never say "as an AI"', "As an AI, I cannot garden.", 0.0),
        ("Don't forget to end with 'Bye now'", "Water daily. Bye now.", 1.0),
        ("Avoid the phrase 'In conclusion' when you end your answer", "In conclusion, water daily.", 0.0),
        ('Mention "crop rotation"', "Use crop rotation yearly.", 1.0),
        ("Keep history answers under 40 words.", PROSE, 1.0),
        ("Keep history answers under 10 words.", PROSE, 10 / 15),  # graded: limit / count
        ("Write at least 30 words.", PROSE, 15 / 30),
        ("Use at most 3 sentences.", LIST, 1.0),  # list markers are not sentence ends
        ("Answer fitness questions as a numbered list of steps.", LIST, 1.0),
        ("Give me numbered steps, please.", PROSE, 0.0),
        ("Use bullet points.", "- one\n- two", 2 / 3),
        ("At least three bullet points for phone stuff.", "- one\n- two\n- three", 1.0),
        # numbered items are not bullets: tech-support's phones Expert answered "1. **Battery**: ..."
        ("At least three bullet points for phone stuff.", LIST, 0.0),
        ("Write in all lowercase.", "all lower here.", 1.0),
        ("Write in all lowercase.", "Not here.", 0.0),
        ("Answer in capital letters only.", "YES, WATER DAILY.", 1.0),
        ("Always end with a question.", "Water daily. Does that help?", 1.0),
        ("Shorter please, I only need the gist.", "Water weekly.", 1.0),  # 2 words vs 27: <= 0.6x
        ("Shorter please, I only need the gist.", WATER, 0.0),
        ("Make it longer and add more detail everywhere.", WATER + " " + WATER, 1.0),
    ],
)
def test_rule_cues(rule, answer, expected):
    cues = rule_cues(answer, rule, original=WATER)
    assert cues, f"no cue found in {rule!r}"
    assert sum(v for _, v in cues) / len(cues) == pytest.approx(expected)


@pytest.mark.parametrize(
    "rule", ["meh", "Be friendly.", "End with a summary.", "I don't know, something feels off."]
)
def test_rules_without_cues(rule):
    assert rule_cues(WATER, rule, original=WATER) == []


def test_rule_score_prefers_the_rule_following_answer_without_correction():
    case = JudgeCase(
        "How do I squat?", PROSE, None, ["Answer fitness questions as a numbered list of steps."]
    )
    assert score(LIST, case).value == 1.0 and score(PROSE, case).value == 0.0


@pytest.mark.parametrize(
    "candidate, reference, expected",
    [  # values checked against NLTK's sentence_bleu with SmoothingFunction().method1
        ("the cat sat on the mat", "the cat is on the mat", 0.254066),
        ("a b c d", "a b c d", 1.0),
        ("A B C D", "a b c d", 1.0),  # lower-cased
        ("hello", "hello world foo bar", 0.008854),
        ("the cat", "the cat sat on the mat", 0.042797),
        ("one two three four five six", "six five four three two one", 0.063894),
        ("x y", "a b", 0.0),
        ("", "a b", 0.0),
    ],
)
def test_bleu_known_values(candidate, reference, expected):
    assert bleu(candidate, reference) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "candidate, base, expected",
    [("a" * 10, "b" * 100, True), ("a" * 9, "b" * 100, False), ("<think>long</think>a", "b" * 20, False)],
)
def test_length_gate(candidate, base, expected):
    assert length_gate(candidate, base) is expected


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (WATER + " Happy growing!", True),
        ("Completely unrelated words here.", False),
        ("", False),
        # A much shorter answer on the same subject (a learned word limit) is still related:
        # the brevity penalty alone would fail it (BLEU with it: 0.0005).
        ("Water them deeply. Happy growing!", True),
    ],
)
def test_bleu_gate(candidate, expected):
    assert bleu_gate(candidate, WATER) is expected


def test_brevity_penalty_is_what_the_gate_leaves_out():
    short = "Water them deeply. Happy growing!"
    assert bleu(short, WATER) < 0.05 < bleu(short, WATER, brevity=False)


@pytest.mark.parametrize(
    "trials, expected",
    [
        ([(0.9, 0.1, True), (0.9, 0.1, True), (0.1, 0.9, True), (0.5, 0.5, True)], 2.5 / 4),
        ([(0.9, 0.1, False), (0.5, 0.5, False)], 0.0),  # failed gates never win or tie
        ([(0.5, 0.5, True)] * 3, 0.5),  # an adapter that changed nothing sits at 0.5
        ([Trial(1.0, 0.0, True), Trial(1.0, 0.0, False), Trial(0.0, 1.0, True)], 1 / 3),  # N counts all
        ([], 0.0),
    ],
)
def test_win_rate_counting(trials, expected):
    assert win_rate(trials) == pytest.approx(expected)


@pytest.mark.parametrize(
    "rate, n, ship, phrase",
    [
        (1.0, 2, False, "fewer than the 3"),  # too few held-out logs, however good
        (0.7, 5, True, "won 0.70"),
        (0.65, 4, True, "won 0.65"),  # the threshold itself passes (reference >=)
        (0.6, 10, False, "won only 0.60"),
    ],
)
def test_ship_decision(rate, n, ship, phrase):
    shipped, reason = ship_decision(rate, n, threshold=0.65, min_heldout=3)
    assert shipped is ship and phrase in reason


@pytest.mark.parametrize(
    "rates, expected",
    [([0.2, 0.8, 0.8, 0.5], 1), ({3: 0.7, 1: 0.7, 2: 0.1}, 1), ([0.5], 0), ({0: 0.0, 1: 0.0}, 0)],
)
def test_best_epoch_ties_go_to_the_earliest(rates, expected):
    assert best_epoch(rates) == expected


@pytest.mark.parametrize(
    "rates, margins, expected",
    [
        ({1: 1.0, 2: 1.0, 3: 1.0}, {1: 0.02, 2: 0.30, 3: 0.25}, 2),  # a tie goes to the larger margin
        ({1: 1.0, 2: 0.5}, {1: 0.0, 2: 0.9}, 1),  # the win rate comes first
        ({1: 0.5, 2: 0.5}, {1: 0.1, 2: 0.1}, 1),  # equal margins: the earliest
    ],
)
def test_best_epoch_breaks_ties_by_score_margin(rates, margins, expected):
    assert best_epoch(rates, margins) == expected


@pytest.mark.parametrize(
    "trials, expected",
    [([], 0.0), ([(0.8, 0.5, True), (0.5, 0.6, True)], 0.1), ([(0.9, 0.1, False), (0.6, 0.6, True)], -0.5)],
)
def test_score_margin(trials, expected):
    assert score_margin(trials) == pytest.approx(expected)


def test_best_epoch_needs_data():
    with pytest.raises(ValueError, match="at least one"):
        best_epoch([])


def test_judge_trial_combines_scores_and_gates():
    adapter = WATER + "\nHappy growing!"
    assert judge_trial(SIGN_OFF, adapter, WATER) == Trial(1.0, 0.0, True)
    drifted = judge_trial(SIGN_OFF, "Happy growing!", WATER)  # too short and unrelated: gates fail
    assert drifted.gates_pass is False and win_rate([drifted]) == 0.0
