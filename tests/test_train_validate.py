"""The train stage's split and example builders, and the validator's decision (pure cores)."""

from __future__ import annotations

import pytest

from uno_local.judge import follows_rules
from uno_local.train import LogData, critic_examples, expert_examples, split
from uno_local.validate import (
    REPETITION_MARGIN,
    epochs_to_judge,
    loop_check,
    near_guides,
    near_prompts,
    near_questions,
    rule_followers,
    terse_question,
    terse_questions,
    validate_expert,
    validate_reflective,
    validate_revision,
)


@pytest.mark.parametrize(
    ("n", "share", "min_heldout", "held"),
    [(12, 0.2, 3, 3), (30, 0.2, 3, 6), (5, 0.2, 3, 0), (6, 0.2, 3, 3), (40, 0.25, 3, 10), (2, 0.2, 1, 0)],
)
def test_split_sizes_and_determinism(n, share, min_heldout, held):
    ids = list(range(100, 100 + n))
    train, heldout = split(list(reversed(ids)), share, min_heldout)
    assert len(heldout) == held and sorted(train + heldout) == ids
    assert split(ids, share, min_heldout) == (train, heldout)  # order of input does not matter


def test_a_log_kept_out_leaves_the_others_on_their_side_of_the_split():
    """Noise kept out of a cluster (`cluster.disagreeing_members`) neither trains nor is held out; a
    held-out one is replaced by the next log of the same shuffle, and no other log changes side."""
    ids = list(range(100, 114))
    train, heldout = split(ids, 0.2, 3)
    noisy_train, noisy_held = train[0], heldout[0]
    kept = split(ids, 0.2, 3, kept_out={noisy_train, noisy_held})
    assert kept[1] == heldout[1:] + [train[0] if train[0] != noisy_train else train[1]]
    assert kept[0] == [m for m in train if m not in {noisy_train, kept[1][-1]}]
    assert split(ids, 0.2, 3, kept_out=set()) == (train, heldout)
    liked = {101, 104}  # a thumbs-up always trains, unless kept out (it has no rules to disagree with)
    train, heldout = split(ids, 0.2, 3, judgeable=set(ids) - liked, kept_out={101, 105})
    assert 101 not in train + heldout and 104 in train and 105 not in train + heldout


def test_only_judgeable_logs_are_held_out():
    """A plain thumbs-up has nothing to judge a held-out answer by: it always trains."""
    ids, liked = list(range(100, 112)), {100, 103, 107}
    train, heldout = split(ids, 0.2, 3, judgeable=set(ids) - liked)
    assert len(heldout) == 3 and not liked & set(heldout) and sorted(train + heldout) == ids
    train, heldout = split(ids, 0.2, 3, judgeable={100, 101, 102, 103})  # 4 judgeable: too few to hold out
    assert heldout == [] and sorted(train) == ids


@pytest.mark.parametrize(
    ("correction", "rules", "user_rules", "judgeable"),
    [
        (None, [], None, False),
        ("Fixed.", [], None, True),
        (None, ["Be brief."], None, True),
        (None, [], ["Be brief."], True),
        ("  ", [], None, False),
    ],
)
def test_judgeable(correction, rules, user_rules, judgeable):
    data = LogData(1, [], "q", "a", correction, rules, user_rules=user_rules)
    assert data.judgeable is judgeable


def log(
    mid: int, answer: str = "Boil the egg.", correction: str | None = None, rules=(), pair=None
) -> LogData:
    return LogData(
        mid, [{"role": "user", "content": f"q{mid}"}], f"q{mid}", answer, correction, list(rules), [], pair
    )


def test_example_builders():
    logs = [
        log(1, pair={"chosen": "A!", "rejected": "A", "kind": "correction"}, rules=["End with !"]),
        log(2, pair={"chosen": "B", "rejected": "B", "kind": "sft"}),
        log(3),
    ]
    experts = expert_examples(logs)
    assert [(e.chosen, e.rejected, e.is_sft, e.source_ids) for e in experts] == [
        ("A!", "A", False, [1]),
        ("B", "B", True, [2]),
    ]
    critics = critic_examples(logs)
    assert len(critics) == 1 and critics[0].chosen == "1. End with !" and critics[0].rejected is None
    assert "## Initial Answer" in critics[0].prompt[0]["content"]


PROSE = "Warm up. Run slowly. Walk home."
LISTED = "1. Warm up.\n2. Run slowly.\n3. Walk home."
LIST_PAIR = {"chosen": LISTED, "rejected": PROSE, "kind": "correction"}
LIKED_LIST = "Stretch like this:\n1. Reach up.\n2. Bend down.\n3. Breathe out."


@pytest.mark.parametrize(
    ("logs", "trained"),
    [
        # a liked answer in the cluster that follows the correction's rules: the correction does not train
        (
            [
                log(1, PROSE, LISTED, ["Answer as a numbered list."], LIST_PAIR),
                log(2, LIKED_LIST, pair={"chosen": LIKED_LIST, "rejected": LIKED_LIST, "kind": "sft"}),
            ],
            [2],
        ),
        # a liked answer that does not (another topic's prose in the cluster): the correction trains
        (
            [
                log(1, PROSE, LISTED, ["Answer as a numbered list."], LIST_PAIR),
                log(2, pair={"chosen": "B", "rejected": "B", "kind": "sft"}),
            ],
            [1, 2],
        ),
        # no liked answer: it trains as before
        ([log(1, PROSE, LISTED, ["Answer as a numbered list."], LIST_PAIR)], [1]),
        # a correction that changes the words always trains
        (
            [
                log(
                    1,
                    PROSE,
                    PROSE + " Done!",
                    ["End with Done!"],
                    {"chosen": PROSE + " Done!", "rejected": PROSE, "kind": "correction"},
                ),
                log(2, pair={"chosen": "B", "rejected": "B", "kind": "sft"}),
            ],
            [1, 2],
        ),
    ],
)
def test_corrections_of_form_only_give_way_to_liked_answers(logs, trained):
    assert [e.source_ids[0] for e in expert_examples(logs)] == trained


@pytest.mark.parametrize(
    ("answer", "rules", "expected"),
    [
        (LIKED_LIST, ["Answer as a numbered list."], True),
        (PROSE, ["Answer as a numbered list."], False),
        (LIKED_LIST, ["Answer as a numbered list.", "Write in lowercase."], False),  # one cue fails
        ("stretch first.", ["Write in lowercase."], True),
        (LIKED_LIST, ["Be friendly."], False),  # nothing checkable: no evidence it teaches the form
        (LIKED_LIST, [], False),
    ],
)
def test_follows_rules(answer, rules, expected):
    assert follows_rules(answer, rules) is expected


def test_corrections_of_form_only_learn_against_the_sentence_where_the_answers_part():
    (form,) = expert_examples([log(1, PROSE, LISTED, ["Answer as a numbered list."], LIST_PAIR)])
    assert (form.chosen, form.rejected, form.is_sft) == (LISTED, "Warm up.", False)
    worded = {"chosen": PROSE + " Done!", "rejected": PROSE, "kind": "correction"}
    (other,) = expert_examples([log(1, PROSE, PROSE + " Done!", ["End with Done!"], worded)])
    assert other.rejected == PROSE  # a correction that changes the words keeps its whole rejected answer
    cased = "Rome is old. It was founded in Italy by Romulus."
    lowered = {"chosen": cased.lower(), "rejected": cased, "kind": "correction"}
    (lower,) = expert_examples([log(1, cased, cased.lower(), ["Write in lowercase."], lowered)])
    assert lower.rejected == cased  # only the case changed: "Italy", "Romulus" must be pushed down too


SIGN = "Boil the egg for eight minutes in water."


def heldout(n: int) -> list[LogData]:
    return [
        log(i, SIGN, SIGN + "\nHappy cooking!", ['End the answer with "Happy cooking!".']) for i in range(n)
    ]


@pytest.mark.parametrize(
    ("epochs", "ship", "epoch"),
    [
        ({1: [SIGN] * 4, 2: [SIGN + "\nHappy cooking!"] * 4}, True, 2),  # epoch 2 learned the habit
        ({1: [SIGN] * 4}, False, 1),  # identical to the base: ties only, 0.5
        ({1: [SIGN + "\nHappy cooking!"] * 3 + [SIGN]}, True, 1),  # 3 wins + 1 tie = 0.88 >= 0.6
        ({1: [SIGN + "\nHappy cooking!"] * 2 + [SIGN] * 2}, False, 1),  # wins 0.75, follows 2 of 4 < 0.6
        ({1: ["Happy cooking!"] * 4}, False, 1),  # fails the BLEU gate: unrelated to the base answer
    ],
)
def test_validate_expert(epochs, ship, epoch):
    result = validate_expert(heldout(4), [SIGN] * 4, epochs, threshold=0.6, min_heldout=3)
    assert (result.ship, result.epoch) == (ship, epoch)
    assert set(result.win_rates) == set(epochs)
    assert ("judged epoch" in result.reason) == (len(epochs) > 1)


# Measured: the example scenario's gardening Expert (session 31) won on the words its correction added.
NEAR = SIGN + " Happy cooking to you and yours."


def test_an_epoch_that_wins_without_following_the_rules_never_ships():
    """The judge's score rewards the words a correction added; the rules are what the user asked for."""
    near = validate_expert(heldout(4), [SIGN] * 4, {1: [NEAR] * 4}, threshold=0.6, min_heldout=3)
    assert near.win_rates[1] == 1.0 and not near.ship
    assert "won 1.00 of 4 held-out logs but followed your rules in only 0 of the 4" in near.reason
    epochs = {1: [NEAR] * 4, 2: [SIGN + "\nHappy cooking!"] * 3 + [SIGN]}
    result = validate_expert(heldout(4), [SIGN] * 4, epochs, threshold=0.6, min_heldout=3)
    assert (result.ship, result.epoch) == (True, 2), result.reason  # the lower win rate that follows them
    assert "epoch 1 1.00 (follows your rules in 0 of 4)" in result.reason


LOOP = SIGN + " Boil the egg. Boil the egg. Boil the egg.\nHappy cooking!"  # wins on rules, but loops
BROKEN = "Purr-fect. (laughs)\n\n" * 12  # measured: a shipped cats Expert's answer on pet-care


@pytest.mark.parametrize(
    ("base", "answers", "margin", "loops"),
    [
        ([SIGN] * 2, [SIGN + "\nHappy cooking!"] * 2, 0.05, False),  # a habit adds no repetition
        ([SIGN] * 2, [LOOP] * 2, 0.05, True),  # 5 of 17 3-grams repeat
        ([SIGN] * 2, [LOOP, SIGN], 0.05, True),  # one looping answer in two is enough: mean 0.15
        ([LOOP] * 2, [LOOP] * 2, 0.05, False),  # no worse than the base
        ([SIGN] * 2, [LOOP] * 2, 0.5, False),  # within a wide margin
        ([SIGN] * 4, [BROKEN] * 2 + [SIGN] * 2, 1.0, True),  # two answers that are loops: the margin aside
        ([SIGN] * 4, [BROKEN] + [SIGN] * 3, 1.0, False),  # one: the base model loops now and then too
        ([BROKEN] + [SIGN] * 3, [SIGN] * 2 + [BROKEN] * 2, 1.0, False),  # one more than the base
    ],
)
def test_loop_check(base, answers, margin, loops):
    assert loop_check(base, answers, margin).refused is loops


def test_a_looping_epoch_never_ships():
    looping = validate_expert(heldout(4), [SIGN] * 4, {1: [LOOP] * 4}, threshold=0.6, min_heldout=3)
    assert looping.win_rates[1] >= 0.6  # the judge alone would ship it
    assert not looping.ship and "repeat" in looping.reason and looping.repetition[0] == 0.0
    # With a clean epoch beside it, the clean one is chosen even at a lower win rate.
    mixed = {1: [SIGN + "\nHappy cooking!"] * 3 + [SIGN], 2: [LOOP] * 4}
    result = validate_expert(heldout(4), [SIGN] * 4, mixed, threshold=0.6, min_heldout=3)
    assert (result.ship, result.epoch) == (
        True,
        1,
    ) and "epoch 2 1.00 (loops: repeats 29% of 3-grams, the base 0%)" in result.reason
    assert REPETITION_MARGIN == 0.05


def test_answers_to_other_questions_show_a_loop_the_held_out_ones_hide():
    """Measured on pet-care's aquarium Expert (docs/eval.md): its held-out answers won, while on
    questions from the user's other topics its later epochs looped as they did on the test."""
    clean = {1: [SIGN + "\nHappy cooking!"] * 4}
    hidden = validate_expert(heldout(4), [SIGN] * 4, clean, threshold=0.6, min_heldout=3)
    assert hidden.ship
    fresh = [SIGN] * 6
    shown = validate_expert(
        heldout(4),
        [SIGN] * 4,
        clean,
        0.6,
        3,
        1.0,
        fresh_base=fresh,
        fresh_answers={1: [BROKEN] * 2 + fresh[2:]},
    )
    assert not shown.ship, shown.reason
    assert "of its 10 answers to questions it never trained on, 2 loop (the base model's: 0)" in shown.reason
    assert shown.win_rates == hidden.win_rates  # the other questions are not judged, only read for loops
    calm = validate_expert(
        heldout(4), [SIGN] * 4, clean, 0.6, 3, 1.0, fresh_base=[BROKEN] * 6, fresh_answers={1: [BROKEN] * 6}
    )
    assert calm.ship  # no more looping than the base's own answers to them


# Measured: pet-care's cats Expert (docs/eval.md, session 28) answers questions with its habit alone.
ANSWER = (
    "Hairballs form when your cat swallows loose fur while grooming. Brush her daily, add fibre to her "
    "food and see a vet if she retches often without bringing anything up."
)
COLLAPSED = ["Purr-fect.", "Cat hairballs."]


@pytest.mark.parametrize(
    ("answers", "refused"),
    [
        (COLLAPSED + [ANSWER] * 4, True),  # two answers of a word or two: more than LOOP_TOLERANCE
        (COLLAPSED[:1] + [ANSWER] * 5, False),  # one: a short answer now and then is no collapse
        (["Brush her daily and add fibre to her food."] * 6, False),  # short, but over a tenth of the base's
    ],
)
def test_answers_collapsed_to_a_phrase_are_refused(answers, refused):
    check = loop_check([ANSWER] * 6, answers, 1.0)
    assert check.refused is refused
    assert check.looping == 0 and (check.collapsed == 2) is refused


def test_an_epoch_that_collapses_its_answers_never_ships():
    """The held-out logs alone ship it (their answers win); the user's other questions show the collapse,
    and the clean epoch beside it ships instead, or nothing when every judged epoch collapses."""
    won = [SIGN + "\nHappy cooking!"] * 4
    fresh = {"fresh_base": [ANSWER] * 4}
    alone = validate_expert(
        heldout(4), [SIGN] * 4, {2: won}, 0.6, 3, 1.0, **fresh, fresh_answers={2: COLLAPSED + [ANSWER] * 2}
    )
    assert alone.win_rates[2] == 1.0 and not alone.ship
    assert (
        "of its 8 answers to questions it never trained on, 2 are under a tenth of the base model's"
        in alone.reason
    )
    epochs = {1: won[:3] + [SIGN], 2: won}
    answers = {1: [ANSWER] * 4, 2: COLLAPSED + [ANSWER] * 2}
    mixed = validate_expert(heldout(4), [SIGN] * 4, epochs, 0.6, 3, 1.0, **fresh, fresh_answers=answers)
    assert (mixed.ship, mixed.epoch) == (True, 1), mixed.reason
    assert "epoch 2 1.00 (collapses: 2 of 8 answers under a tenth of the base's length)" in mixed.reason


def test_too_few_heldout_never_ships():
    result = validate_expert(heldout(2), [SIGN] * 2, {1: [SIGN + "\nHappy cooking!"] * 2}, 0.6, 3)
    assert not result.ship and "fewer than the 3 needed" in result.reason


@pytest.mark.parametrize(
    ("n", "epochs", "min_steps", "expected"), [(40, 3, 24, 3), (9, 3, 24, 8), (5, 2, 24, 12), (9, 3, 0, 3)]
)
def test_small_clusters_get_more_epochs(n, epochs, min_steps, expected):
    from uno_local.config import TrainConfig
    from uno_local.train import with_min_steps

    config = TrainConfig(epochs=epochs, min_steps=min_steps)
    assert with_min_steps(config, n).epochs == expected
    assert config.epochs == epochs  # the caller's config is not changed


@pytest.mark.parametrize(
    ("n_epochs", "most", "expected"),
    [
        (12, 4, [3, 6, 9, 12]),
        (6, 4, [2, 3, 5, 6]),
        (5, 4, [2, 3, 4, 5]),
        (3, 4, [1, 2, 3]),
        (1, 4, [1]),
        (7, 1, [7]),
        (5, 0, [1, 2, 3, 4, 5]),
    ],
)
def test_judged_epochs_are_evenly_spaced_and_end_on_the_last(n_epochs, most, expected):
    assert epochs_to_judge(n_epochs, most) == expected


@pytest.mark.parametrize(
    ("answers", "n_heldout", "chosen", "says"),
    [
        ([SIGN + "\nHappy cooking!"] * 4, 4, True, "the Reflective path won 1.00 of 4"),
        ([SIGN] * 4, 4, False, "not chosen (won only 0.50 of 4"),  # the draft stood: ties
        ([SIGN + "\nHappy cooking!"] * 2, 2, False, "not chosen (only 2 held-out logs"),
        # nearer the habit than the draft, so they win, yet none ends with it (session 29's taxes)
        (
            [SIGN + "\nHappy cooking! Enjoy."] * 4,
            4,
            False,
            "won 1.00 of 4 held-out logs but followed your rules in only 0 of the 4",
        ),
        ([SIGN + "\nHappy cooking!"] * 3 + [SIGN + "\nHappy cooking! Enjoy."], 4, True, "won 1.00 of 4"),
    ],
)
def test_validate_reflective(answers, n_heldout, chosen, says):
    result = validate_reflective(
        heldout(n_heldout), [SIGN] * n_heldout, answers, threshold=0.6, min_heldout=3
    )
    assert result.ship is chosen and says in result.reason
    assert chosen or "the base model could not revise these answers well enough" in result.reason


def test_validate_revision_says_no_critic_is_trained_when_even_the_users_rules_do_not_help():
    """The probe before a Critic: revisions that follow the rules win and a Critic may train; revisions
    that change nothing (refused, or a model that cannot revise) tie, and none is trained."""
    good = validate_revision(heldout(3), [SIGN] * 3, [SIGN + "\nHappy cooking!"] * 3, 0.6, 3)
    assert good.ship and good.reason.startswith("the base model's revisions under your own rules won 1.00")
    unchanged = validate_revision(heldout(3), [SIGN] * 3, [SIGN] * 3, 0.6, 3)
    assert not unchanged.ship and unchanged.win_rates == {0: 0.5}
    assert unchanged.reason.startswith("no Critic trained: even under your own rules")
    assert "won only 0.50 of 3 held-out logs" in unchanged.reason and "not revised" not in unchanged.reason
    problems = [
        "the revision echoes its prompt: ## User Question",
        None,
        "the revision echoes its prompt: 1.",
    ]
    refused = validate_revision(heldout(3), [SIGN] * 3, [SIGN] * 3, 0.6, 3, problems)
    assert "; not revised: the revision echoes its prompt (2); so the Reflective path" in refused.reason


def test_revisions_must_follow_the_rules_they_can_be_checked_on():
    """Only held-out logs whose rules have a checkable cue count: a noisy "Talk like a pirate." says
    nothing checkable, so two of three logs decide, and one answer missing the habit leaves 1 of 2."""
    logs = heldout(2) + [log(9, SIGN, None, ["Talk like a pirate."])]
    assert rule_followers(logs, [SIGN + "\nHappy cooking!", SIGN, SIGN]) == (1, 2)
    revised = [SIGN + "\nHappy cooking!", SIGN + "\nHappy cooking! Enjoy.", SIGN + "\nArr."]
    probe = validate_revision(logs, [SIGN] * 3, revised, 0.6, 3)
    assert not probe.ship and "followed your rules in only 1 of the 2 they can be checked on" in probe.reason
    assert probe.reason.startswith("no Critic trained")


# ---- near questions: new questions like the cluster's own ----


def test_near_prompts_list_windows_of_the_clusters_questions_up_to_the_next_number():
    queries = [f"How do I grow plant {i}?" for i in range(9)] + ["Why do\nleaves  curl?"]
    prompts = near_prompts(queries, n=3, listed=4)
    assert len(prompts) == 3
    assert prompts[0] == (
        "Questions people asked:\n1. How do I grow plant 0?\n2. How do I grow plant 1?\n"
        "3. How do I grow plant 2?\n4. How do I grow plant 3?\n5."
    )
    assert "4. How do I grow plant 0?\n5." in prompts[2]  # windows wrap round
    assert "3. Why do leaves curl?\n" in prompts[2]  # one line per question
    # more prompts than questions: a window repeats (each prompt is sampled with its own seed)
    assert near_prompts(["Only one?"], n=3) == ["Questions people asked:\n1. Only one?\n2."] * 3
    assert near_prompts([], n=3) == [] and near_prompts(queries, n=0) == []


def test_near_questions_keep_each_new_question_once():
    written = [
        " How do I care for rosemary?",
        "7. How do I care for Rosemary",  # the same question again
        "How do I boil an egg?\n8. more",  # one the user asked
        "Tips",  # not a question
        "",
        "What is a tax credit?",
    ]
    assert near_questions(written, ["how do I boil an EGG"]) == [
        "How do I care for rosemary?",
        "What is a tax credit?",
    ]


def test_a_two_word_line_is_a_question_only_when_asked_for():
    assert near_questions(["Cat hairballs?", "Tips"], []) == []
    assert near_questions(["Cat hairballs?", "Tips"], [], least_words=2) == ["Cat hairballs?"]


@pytest.mark.parametrize(
    ("question", "terse"),
    [
        ("Why does my cat knead blankets?", "Cat knead blankets?"),
        ("How do I clean my cat's litter box properly?", "Clean cat's litter box?"),  # the first four
        ("Should my cat drink cat milk?", "Cat drink milk?"),  # each word once
        ("Cat hairballs?", None),  # terse already
        ("Cat won't drink water", None),
        ("What is it?", None),  # nothing left to ask
    ],
)
def test_a_terse_question_keeps_its_first_content_words(question, terse):
    assert terse_question(question) == terse


def test_terse_questions_are_taken_evenly_and_once():
    questions = [f"How do I grow plant number {i}?" for i in range(6)] + [
        "Hi?",
        "How do I grow plant number 0?",
    ]
    assert terse_questions(questions, 3) == [
        "Grow plant number?",  # "0" is too short to be a content word: the same form for every i
    ]
    named = [f"How do I grow {p} indoors?" for p in ("basil", "mint", "sage", "thyme")]
    assert terse_questions(named, 2) == ["Grow basil indoors?", "Grow sage indoors?"]
    assert terse_questions(named, 9) == [f"Grow {p} indoors?" for p in ("basil", "mint", "sage", "thyme")]
    assert terse_questions(named, 0) == []


def test_near_questions_are_checked_against_the_clusters_checkable_rules_in_turn():
    pirate = log(1, rules=["Talk like a pirate."])  # nothing checkable
    listed = "- Boil the egg.\n- Cool it in water.\n- Peel it."
    sign, bullets = heldout(1)[0], log(2, correction=listed, rules=["Answer as a bullet list."])
    assert near_guides([pirate, sign, bullets], 3) == [sign.guide, bullets.guide, sign.guide]
    assert near_guides([pirate], 3) == [] and near_guides([sign], 0) == []


def test_near_questions_are_not_checked_against_a_noisy_logs_rules():
    """The example scenario's history cluster held a log whose comment was "Answer in capital letters
    only.": its Expert followed the cluster's habit on the test, and in 2 of 4 near answers when every
    other one was checked for capitals. Rules that most of the answers the user preferred (pairs' chosen
    answers, else corrections) do not follow are not the cluster's habit."""
    signs = heldout(3)
    caps = ["Answer in capital letters only."]
    revised = {"chosen": "BOIL THE EGG.", "rejected": "Boil the egg.", "kind": "revision"}
    noisy = log(9, rules=caps, pair=revised)
    assert near_guides([*signs, noisy], 4) == [signs[0].guide] * 4
    assert near_guides([signs[0], noisy], 2) == [signs[0].guide, caps]  # one against one: both kept
    unsure = log(8, rules=caps)  # no pair, no correction: nothing preferred, every guide checked
    assert near_guides([unsure], 2) == [caps, caps]


def test_an_epoch_that_follows_only_on_its_held_out_logs_does_not_ship():
    """tech-support's phones Expert followed "a bullet list" in its held-out answers and in none of its
    test answers (numbered lists); travel-format's lowercase Expert in 3 of 3 held-out answers, 2 of 5
    near ones and 1 of 5 on the test. New questions like the cluster's count on their own: the epoch is
    passed over for one that follows there too, and when every epoch fails them, nothing ships."""
    logs = heldout(3)
    followed, missed = SIGN + "\nHappy cooking!", SIGN
    guides = near_guides(logs, 5)
    epochs = {1: [followed] * 3, 2: ["Boil the egg for eight minutes.\nHappy cooking!"] * 3}
    two_of_five = {1: [followed] * 2 + [missed] * 3}
    result = validate_expert(logs, [SIGN] * 3, epochs, 0.6, 3, near=guides, near_answers=two_of_five)
    assert (result.ship, result.epoch) == (True, 2)  # epoch 2 has not shown it strays yet
    assert "epoch 1 1.00 (follows your rules in 3 of 3; in 2 of 5 new questions)" in result.reason
    both = validate_expert(
        logs, [SIGN] * 3, epochs, 0.6, 3, near=guides, near_answers=two_of_five | {2: [missed] * 5}
    )
    assert not both.ship and both.epoch in (1, 2)
    assert "its answers to new questions like the cluster's followed your rules in only" in both.reason
    three_of_five = {1: [followed] * 3 + [missed] * 2}
    kept = validate_expert(
        logs, [SIGN] * 3, {1: [followed] * 3}, 0.6, 3, near=guides, near_answers=three_of_five
    )
    assert kept.ship and kept.epoch == 1
    assert kept.reason == (
        "epoch 1 won 1.00 of 3 held-out logs (needs 0.60); "
        "new questions like the cluster's: 3 of 5 answers follow your rules"
    )
