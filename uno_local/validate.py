"""Validate: an Expert's per-epoch answers on held-out logs -> ship or not, and which epoch.

The simulation validator of UNO S8 with the deterministic judge (`judge.py`): every held-out log
scores the adapter's answer against the base model's, both judged by that log's own feedback
(the user's correction as the reference when there is one, its rules otherwise), with the length
and BLEU gates. The best epoch ships only with enough held-out logs and a win rate at or above the
threshold; otherwise the cluster goes to the Reflective path. Only a few evenly spaced epochs are
judged (`epochs_to_judge`): each judged epoch costs an export and a generated answer per held-out log.
An epoch whose unseen answers hold more loops (`quality.loops`) than the base's answers to the same
questions and `LOOP_TOLERANCE`, or repeat more word 3-grams on average than the margin above theirs (`uno.repetition_margin`,
opt-in), or that collapses more answers below the judge's length gate (a tenth of the base answer's
length: "Purr-fect." alone, "Cat hairballs.") than `LOOP_TOLERANCE`, is never chosen; when every judged
epoch fails this check, nothing ships (`loop_check`). The unseen answers are the held-out logs' and, where the retrain passes them,
answers to the user's other questions, which this Expert never trained on (`fresh_*`): three held-out
answers alone did not show the loops (docs/eval.md, sessions 21 and 24). An Expert's epoch and the
revisions (the probe before a Critic, the Reflective path) must also follow the checkable rules of their
held-out logs at the rate they must win (`rule_followers`): the judge's score counts the words a
correction added, so an epoch without the sign-off asked for won 0.67 of 3 held-out logs and shipped,
and followed the rule in none of the test's answers (the example scenario's gardening, session 31).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import fmean

from uno_local.judge import (
    JudgeCase,
    best_epoch,
    follows_rules,
    judge_trial,
    length_gate,
    rule_check,
    score_margin,
    ship_decision,
    win_rate,
)
from uno_local.quality import loops, repetition_share
from uno_local.text import STOPWORDS, words
from uno_local.train import LogData

# Where a decision leaves its cluster on the base model (callers add it: a high gap tries an Expert first).
STAYS_ON_BASE = "; they stay on the base model"
REPETITION_MARGIN = 0.05  # the acceptance: topic answers repeat at most 5 points more than the base
# Looping answers an epoch may have beyond the base's on the same questions: the base model loops now and
# then too (one of the example scenario's five gardening test answers), and with 11 answers a single
# extra loop refused the gardening Expert that reaches 80% on the test (docs/eval.md, session 24).
LOOP_TOLERANCE = 1


@dataclass
class Validation:
    ship: bool
    epoch: int | None  # 1-based epoch chosen
    win_rates: dict[int, float]
    n_heldout: int
    reason: str
    trials: dict[int, list[tuple[float, float, bool]]] = field(default_factory=dict)
    repetition: dict[int, float] = field(default_factory=dict)  # epoch -> mean share; key 0: the base


def mean_repetition(answers: list[str]) -> float:
    """Mean share of repeated word 3-grams over `answers` (0 for none)."""
    return fmean(map(repetition_share, answers)) if answers else 0.0


@dataclass(frozen=True)
class LoopCheck:
    """An epoch's answers to questions it never trained on, against the base's answers to the same."""

    looping: int  # answers that are loops (`quality.loops`)
    answers: int
    base_looping: int
    repetition: float  # mean share of repeated word 3-grams
    base_repetition: float
    margin: float
    collapsed: int = 0  # answers under the judge's length gate: a tenth of the base's answer or less

    @property
    def refused(self) -> bool:
        """More looping answers than the base's and `LOOP_TOLERANCE`, more collapsed ones than
        `LOOP_TOLERANCE`, or a mean repetition more than `margin` above the base's."""
        return (
            self.too_many_loops
            or self.too_many_collapsed
            or self.repetition > self.base_repetition + self.margin
        )

    @property
    def too_many_loops(self) -> bool:
        return self.looping > self.base_looping + LOOP_TOLERANCE

    @property
    def too_many_collapsed(self) -> bool:
        return self.collapsed > LOOP_TOLERANCE

    def note(self) -> str:
        if self.too_many_loops:
            return f"loops: {self.looping} of {self.answers} answers, the base {self.base_looping}"
        if self.too_many_collapsed:
            return f"collapses: {self.collapsed} of {self.answers} answers under a tenth of the base's length"
        return f"loops: repeats {self.repetition:.0%} of 3-grams, the base {self.base_repetition:.0%}"

    def refusal(self) -> str:
        """Why an epoch that fails the check never ships, in one sentence for `uno rules`."""
        if self.too_many_collapsed and not self.too_many_loops:
            return (
                f"does not ship: of its {self.answers} answers to questions it never trained on, "
                f"{self.collapsed} are under a tenth of the base model's answer to the same question "
                "(an answer collapsed to a phrase, such as its habit alone)"
            )
        return (
            f"does not ship: of its {self.answers} answers to questions it never trained on, {self.looping} "
            f"loop (the base model's: {self.base_looping}), and they repeat {self.repetition:.0%} of their "
            f"3-grams against the base's {self.base_repetition:.0%}"
        )


def loop_check(base_answers: list[str], answers: list[str], margin: float) -> LoopCheck:
    """Pure: `answers` against the base's to the same questions, in the same order."""
    return LoopCheck(
        sum(map(loops, answers)),
        len(answers),
        sum(map(loops, base_answers)),
        mean_repetition(answers),
        mean_repetition(base_answers),
        margin,
        sum(not length_gate(a, b) for a, b in zip(answers, base_answers, strict=True)),
    )


def epochs_to_judge(n_epochs: int, most: int) -> list[int]:
    """Pure: up to `most` evenly spaced 1-based epochs of `n_epochs`, always the last; `most` < 1: all.

    12 epochs, 4 judged -> 3, 6, 9, 12; 3 epochs -> 1, 2, 3.
    """
    if most < 1 or n_epochs <= most:
        return list(range(1, n_epochs + 1))
    return sorted({math.ceil(i * n_epochs / most) for i in range(1, most + 1)})


def judge_case(log: LogData) -> JudgeCase:
    return JudgeCase(log.query, log.answer, log.correction, tuple(log.guide))


def validate_expert(
    heldout: list[LogData],
    base_answers: list[str],
    epoch_answers: dict[int, list[str]],
    threshold: float,
    min_heldout: int,
    repetition_margin: float = REPETITION_MARGIN,
    fresh_base: list[str] | None = None,
    fresh_answers: dict[int, list[str]] | None = None,
    near: list[list[str]] | None = None,
    near_answers: dict[int, list[str]] | None = None,
) -> Validation:
    """Pure: answers in held-out order; `epoch_answers` maps 1-based epoch -> answers. Epochs that loop
    more than the base (`loop_check`) on the held-out answers and the fresh ones together (the base's
    and each epoch's answers to questions from outside the cluster; not judged) are chosen only when all
    do, and then never ship; so are, among the rest, epochs whose held-out answers follow their logs'
    checkable rules less often than `threshold` (`rule_followers`), or whose answers to new questions
    like the cluster's do, where an epoch has them (`near_answers`, each checked against its rules in
    `near`: `near_guides`)."""
    if len(heldout) < min_heldout or not epoch_answers:
        ship, reason = ship_decision(0.0, len(heldout), threshold, min_heldout)
        return Validation(False, None, {}, len(heldout), reason)
    cases = [judge_case(log) for log in heldout]
    trials = {
        epoch: [
            tuple(judge_trial(case, cand, base))
            for case, cand, base in zip(cases, answers, base_answers, strict=True)
        ]
        for epoch, answers in epoch_answers.items()
    }
    rates = {epoch: win_rate(t) for epoch, t in trials.items()}
    fresh_answers = fresh_answers or {}
    checks = {  # each epoch against the base on the same questions: held-out, plus fresh where answered
        e: loop_check(
            base_answers + (fresh_base or []) if e in fresh_answers else base_answers,
            answers + fresh_answers.get(e, []),
            repetition_margin,
        )
        for e, answers in epoch_answers.items()
    }
    repetition = {0: mean_repetition(base_answers)} | {e: c.repetition for e, c in checks.items()}
    looping = {e for e, c in checks.items() if c.refused}
    near_answers = near_answers or {}
    followers = {e: rule_followers(heldout, answers) for e, answers in epoch_answers.items()}
    # New questions like the cluster's count on their own: held-out logs share their training logs'
    # wording, and travel-format's lowercase Expert followed in 3 of 3 of them and 2 of 5 near ones (the
    # test: 1 of 5; docs/eval.md, session 32).
    near_followers = {e: guide_followers(near or [], answers) for e, answers in near_answers.items()}
    astray = {
        e
        for e in epoch_answers
        if too_few_follow(*followers[e], threshold)
        or too_few_follow(*near_followers.get(e, (0, 0)), threshold)
    }
    eligible = {e: r for e, r in rates.items() if e not in looping} or rates
    eligible = {e: r for e, r in eligible.items() if e not in astray} or eligible
    epoch = best_epoch(eligible, {e: score_margin(trials[e]) for e in eligible})
    ship, reason = ship_decision(rates[epoch], len(heldout), threshold, min_heldout)
    if epoch in looping:  # every judged epoch loops: never shipped, whatever its win rate
        ship = False
        reason = checks[epoch].refusal()
    elif ship and epoch in astray:  # every clean epoch wins without following the user's rules
        ship = False
        if too_few_follow(*followers[epoch], threshold):
            reason = rules_shortfall(rates[epoch], len(heldout), *followers[epoch], threshold)
        else:
            reason = near_shortfall(rates[epoch], len(heldout), *near_followers[epoch], threshold)
    elif epoch in near_followers:  # the evidence beside the held-out logs, for `uno rules`
        reason += "; new questions like the cluster's: {} of {} answers follow your rules".format(
            *near_followers[epoch]
        )

    def epoch_note(e: int) -> str:
        if e in looping:
            return checks[e].note()
        note = "follows your rules in {} of {}".format(*followers[e])
        return note + (
            "; in {} of {} new questions".format(*near_followers[e]) if e in near_followers else ""
        )

    if len(rates) > 1:  # what the other judged epochs did, for `uno rules` and the retrain report
        reason += "; judged " + ", ".join(
            f"epoch {e} {r:.2f}" + (f" ({epoch_note(e)})" if e in looping | astray else "")
            for e, r in sorted(rates.items())
        )
    return Validation(ship, epoch, rates, len(heldout), f"epoch {epoch} {reason}", trials, repetition)


def rule_followers(heldout: list[LogData], answers: list[str]) -> tuple[int, int]:
    """Pure: (answers that pass every checkable cue of their log's own rules, held-out logs whose rules
    have a checkable cue at all: `judge.rule_check`; "Talk like a pirate." has none and is not counted)."""
    return guide_followers([log.guide for log in heldout], answers)


def guide_followers(guides: Sequence[Sequence[str]], answers: list[str]) -> tuple[int, int]:
    """Pure: `rule_followers` for answers each checked against its own rules in `guides`."""
    checks = [rule_check(answer, guide) for guide, answer in zip(guides, answers, strict=True)]
    return sum(c is True for c in checks), sum(c is not None for c in checks)


# ---- near questions: new questions like a cluster's own, which no log asked ----

# Prompts per cluster; each may give one new question. 8 gave 5-7 questions, where one answer moved the
# share by 0.17 across the 0.60 bar: tech-support's passwords Expert passed at 4 of 6 and failed at 3 of 6
# from one run to the next; with 16 (7 of 11) it shipped and followed in 5 of 6 test answers, and the
# phones Expert (numbered lists where bullets were asked; 0 of 6 test answers) fell to 1 of 7 (session 36;
# with every guide checked, not `near_guides`' consensus ones, which session 37 added).
NEAR_QUESTIONS = 16
NEAR_LISTED = 6  # the cluster's questions one prompt lists before the model writes the next
NEAR_TOKENS = 40  # a question's budget; the first line is kept
# Sampled, one seed per prompt (greedy, the embedded model wrote "What's a fun fact about Rome?" for
# every list of city-trivia questions: ones its Expert answers as it was trained, docs/eval.md session 32)
NEAR_TEMPERATURE, NEAR_TOP_P, NEAR_SEED = 1.0, 0.95, 7
_NEAR_HEAD = "Questions people asked:\n"
_NUMBER = re.compile(r"^\s*\d+[.)]\s*")


def near_prompts(queries: Sequence[str], n: int = NEAR_QUESTIONS, listed: int = NEAR_LISTED) -> list[str]:
    """Pure: `n` plain-text prompts, each a numbered list of `listed` of `queries` (windows starting
    evenly over them, wrapping round; repeated when `n` is more than the queries) that ends at the next number: a base model continues such a list
    with a question like them, where in a chat the embedded model answers "I'm ready to help."."""
    lines = [" ".join(q.split()) for q in queries if q.strip()]
    if not lines or n < 1:
        return []
    k = min(listed, len(lines))
    starts = [round(i * len(lines) / n) % len(lines) for i in range(n)]
    return [
        _NEAR_HEAD
        + "".join(f"{j}. {lines[(start + j - 1) % len(lines)]}\n" for j in range(1, k + 1))
        + f"{k + 1}."
        for start in starts
    ]


def near_questions(continuations: Sequence[str], known: Iterable[str], least_words: int = 3) -> list[str]:
    """Pure: the new questions in `continuations` (each one's first line, a list number stripped), once
    each and none the user already asked (`known`; words compared, case and punctuation aside). A line
    of fewer than `least_words` words is not a question."""
    seen = {" ".join(words(q)) for q in known}
    out = []
    for text in continuations:
        line = _NUMBER.sub("", (text.strip().splitlines() or [""])[0]).strip()
        key = " ".join(words(line))
        if len(key.split()) >= least_words and key not in seen:
            seen.add(key)
            out.append(line)
    return out


TERSE_WORDS = 4  # content words a terse question keeps


def terse_question(question: str, most: int = TERSE_WORDS) -> str | None:
    """Pure: `question` as a user types it in a hurry: its first `most` content words (`text.STOPWORDS`
    aside), in order, capitalised, with a question mark ("Why does my cat knead blankets?" -> "Cat knead
    blankets?"). None when it keeps fewer than two words or is that terse already. The scenarios' users
    ask "Cat hairballs?" beside full questions, and an Expert that learned a sign-off from full questions
    answered such ones with the sign-off alone (pet-care's cats, docs/eval.md, session 34)."""
    kept = list(dict.fromkeys(w for w in words(question) if len(w) > 2 and w not in STOPWORDS))[:most]
    if len(kept) < 2 or len(kept) >= len(words(question)):
        return None
    return " ".join(kept).capitalize() + "?"


def terse_questions(questions: Sequence[str], n: int) -> list[str]:
    """Pure: up to `n` terse forms (`terse_question`) of `questions`, taken evenly over them, each once."""
    forms = list(dict.fromkeys(t for q in questions if (t := terse_question(q))))
    if n < 1:
        return []
    return forms if len(forms) <= n else [forms[i * len(forms) // n] for i in range(n)]


def checkable(guide: Sequence[str]) -> bool:
    """Pure: `guide` has a rule `judge.rule_check` can check an answer against."""
    return rule_check("", guide) is not None


# A rule counts for the near check when at least this share of the cluster's preferred answers follow it
CONSENSUS = 0.5


def near_guides(logs: Sequence[LogData], n: int, consensus: float = CONSENSUS) -> list[list[str]]:
    """Pure: the rules each of `n` near questions is checked against: the checkable guides of the
    cluster's `logs`, in turn, that at least `consensus` of the answers the user preferred follow (each
    log's pair's chosen answer, else its correction; every guide when no log has one). A noisy log's
    rules are not the cluster's habit: the example scenario's history cluster holds a log whose comment
    was "Answer in capital letters only.", and its Expert, which follows the cluster's habit on the test,
    followed in 2 of 4 near answers when every other one was checked for capitals (docs/eval.md, session
    36). None when no guide is left: the questions then check nothing."""
    guides = [list(log.guide) for log in logs if checkable(log.guide)]
    preferred = [a for log in logs if (a := log.pair["chosen"] if log.pair else log.correction)]
    if preferred:
        guides = [
            g for g in guides if sum(follows_rules(a, g) for a in preferred) >= consensus * len(preferred)
        ]
    return [guides[i % len(guides)] for i in range(n)] if guides else []


def too_few_follow(followed: int, checkable: int, threshold: float) -> bool:
    """Pure: answers follow their checkable rules less often than `threshold` (never, with none to check)."""
    return bool(checkable) and followed / checkable < threshold


def _judged_once(
    heldout: list[LogData], base_answers: list[str], answers: list[str], threshold: float, min_heldout: int
) -> tuple[bool, str, float, list]:
    """Pure: one set of answers judged against the base answers as an Expert epoch's are, and, being
    revisions, by the user's rules as well: they must follow the checkable rules of their held-out logs
    (`rule_followers`) at the same rate as they must win. A revision is judged against the base's own
    draft, so one only nearer the habit wins without having it: money-matters' taxes Reflective path won
    0.83 of 3 held-out logs and kept 1 of 6 test answers under the 60 words asked; the base model's
    revisions of the same logs won 1.00 and followed the rule in 0 of 3 (docs/eval.md, session 29)."""
    cases = [judge_case(log) for log in heldout]
    trials = [tuple(judge_trial(c, a, b)) for c, a, b in zip(cases, answers, base_answers, strict=True)]
    rate = win_rate(trials)
    ship, why = ship_decision(rate, len(heldout), threshold, min_heldout)
    followed, checkable = rule_followers(heldout, answers)
    if ship and too_few_follow(followed, checkable, threshold):
        ship = False
        why = rules_shortfall(rate, len(heldout), followed, checkable, threshold)
    return ship, why, rate, trials


def rules_shortfall(rate: float, n_heldout: int, followed: int, checkable: int, threshold: float) -> str:
    """Pure: why answers that won did not ship, in one clause."""
    return (
        f"won {rate:.2f} of {n_heldout} held-out logs but followed your rules in only {followed} of "
        f"the {checkable} they can be checked on, where {threshold:.2f} is needed"
    )


def near_shortfall(rate: float, n_heldout: int, followed: int, checkable: int, threshold: float) -> str:
    """Pure: why an epoch that won and followed the rules on its held-out logs did not ship."""
    return (
        f"won {rate:.2f} of {n_heldout} held-out logs but its answers to new questions like the cluster's "
        f"followed your rules in only {followed} of {checkable}, where {threshold:.2f} is needed"
    )


def refusals(problems: list[str | None]) -> str:
    """Pure: why revisions were refused, by kind with counts ("the revision echoes its prompt (2)");
    "" when none was. A problem's details (after ":" or " (") are left out."""
    kinds = Counter(p.split(":")[0].split(" (")[0] for p in problems if p)
    return ", ".join(f"{kind} ({n})" for kind, n in kinds.most_common())


def validate_revision(
    heldout: list[LogData],
    base_answers: list[str],
    revised: list[str],
    threshold: float,
    min_heldout: int,
    problems: list[str | None] | None = None,
) -> Validation:
    """Pure: whether the base model can revise its own answers for this cluster at all, before a Critic
    is trained. `revised`: the base answers to the held-out logs revised under each log's own rules, the
    suggestions a Critic trained on these logs aims to give (a refused revision leaves the answer: a
    tie; `problems` says why each was refused, None where it was not). When even these do not win as an
    Expert must, no Critic can make the Reflective path ship, so none is trained and the cluster stays
    on the base model."""
    ship, why, rate, trials = _judged_once(heldout, base_answers, revised, threshold, min_heldout)
    if ship:
        reason = f"the base model's revisions under your own rules {why}"
    else:
        refused = refusals(problems or [])
        reason = (
            f"no Critic trained: even under your own rules, the base model's revisions of its answers {why}"
            + (f"; not revised: {refused}" if refused else "")
            + "; so the Reflective path could not help"
        )
    return Validation(ship, None, {0: rate}, len(heldout), reason, {0: trials})


def validate_reflective(
    heldout: list[LogData], base_answers: list[str], answers: list[str], threshold: float, min_heldout: int
) -> Validation:
    """Pure: the Reflective path's final answers (draft, the Critic's suggestions, the base model's
    revision) on the held-out logs, judged against the base answers as an Expert's are. It is chosen only
    with the win rate an Expert needs: otherwise the base model cannot revise these answers well enough
    (a revision refused as scaffolding or implausible leaves the draft: a tie), and they stay on the base."""
    ship, why, rate, trials = _judged_once(heldout, base_answers, answers, threshold, min_heldout)
    if ship:
        reason = f"the Reflective path {why}"
    else:
        reason = (
            f"the Reflective path was not chosen ({why}): the base model could not revise these answers "
            "well enough"
        )
    return Validation(ship, None, {0: rate}, len(heldout), reason, {0: trials})
