"""Deterministic judge: (held-out log, candidate answer) -> score in [0, 1], plus the validator's gates.

Why not "similarity to the correction": a correction is usually the original answer lightly edited,
so plain similarity rewards the base model for repeating itself. The score is EDIT-AWARE instead:
- added: word uni/bigrams the user put in (in the correction, not the original) that the candidate has;
- removed: the share of uni/bigrams the user deleted that the candidate also leaves out;
- length: when the user shortened (lengthened) the answer by over 15%, a candidate at most (at least)
  as long as the correction gets 1, one as long as the original 0.5, one that moved as far again the
  wrong way 0 (linear in between);
- rules: cheap checks parsed from the distilled rules (`rule_cues` below: quoted or
  "end with X" phrases, word/sentence limits, numbered or bullet lists, letter case, shorter/longer).
The score is the mean of the parts that apply; with no correction and no checkable rule it is the
neutral 0.5. Stopwords are ignored in unigrams so common words never decide a verdict.
Gates and counting follow UNO-reference S8: length >= 0.1 x base, BLEU-4 vs base > 0.05, win +1,
tie +0.5, divided by every held-out log.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from uno_local.text import STOPWORDS, words

_THINK = re.compile(r"<think>.*?</think>", re.S)


def _ngrams(tokens: list[str]) -> set[tuple[str, ...]]:
    grams = {(t,) for t in tokens if t not in STOPWORDS}
    return grams | set(zip(tokens, tokens[1:], strict=False))


@dataclass(frozen=True)
class JudgeCase:
    """One held-out log as the judge sees it."""

    query: str
    original: str  # the answer the user reacted to
    correction: str | None = None  # the user's own better answer, if any
    rules: Sequence[str] = field(default_factory=tuple)  # distilled feedback rules


@dataclass(frozen=True)
class Score:
    value: float  # in [0, 1]
    explanation: str


def _edit_parts(candidate: str, original: str, correction: str) -> list[tuple[str, float]]:
    orig, corr, cand = words(original), words(correction), words(candidate)
    g_orig, g_corr, g_cand = _ngrams(orig), _ngrams(corr), _ngrams(cand)
    parts = []
    added, removed = g_corr - g_orig, g_orig - g_corr
    if added:
        parts.append((f"added {len(added & g_cand)}/{len(added)}", len(added & g_cand) / len(added)))
    if removed:
        kept_out = len(removed - g_cand)
        parts.append((f"left out {kept_out}/{len(removed)} removed", kept_out / len(removed)))
    lo, lc, lx = len(orig), len(corr), len(cand)
    if lo and abs(lc - lo) > 0.15 * lo:  # the user changed the length by over 15%
        # d: 0 at the correction's length, 1 at the original's; overshooting the user's way is fine.
        d = max(0.0, (lx - lc) / (lo - lc))
        verb = "cut" if lc < lo else "grew"
        parts.append((f"length {lx} words (user {verb} {lo}->{lc})", max(0.0, 1.0 - d / 2)))
    return parts


# ---- rule cues: each returns a score in [0, 1] or None when the rule says nothing checkable ----

_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,80})[\"“”]|(?<!\w)'([^']{2,80}?)'(?!\w)")
_END_VERB = re.compile(r"\b(end|ends|ending|finish|finishing|close|conclude|sign(?:ing)?[ -]off|wrap up)\b")
_START_VERB = re.compile(r"\b(start|starts|begin|begins|open|opens)\b")
_NEG = re.compile(r"\b(never|avoid|don't|do not|without|stop)\b")
_UNQUOTED_END = re.compile(
    r"\b(?:end|finish|close|conclude|sign[ -]off|wrap up)\w*(?:\s+(?:it|each|every|the|your|all|\w+ing|answers?))*"
    r"\s+with\s+(?:the (?:line|phrase|words?)\s+)?(.+?)\s*(?:\bplease\b|\blike\b|\bat the end\b|$)"
)
_COUNT_WORD = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "ten": 10,
}
_NUM = r"(\d+|" + "|".join(_COUNT_WORD) + r")"
_UNIT = r"(words?|sentences?|lines?|bullet points?|bullets?|items?|points?|steps?)"
_MAX = re.compile(
    r"\b(?:under|below|fewer than|less than|at most|no more than|maximum of|max|within|up to)\s+"
    + _NUM
    + r"\s+"
    + _UNIT
)
_MAX_AFTER = re.compile(_NUM + r"\s+" + _UNIT + r"\s+or\s+(?:less|fewer)\b")
_MIN = re.compile(r"\b(?:at least|more than|over|minimum of)\s+" + _NUM + r"\s+" + _UNIT)
_NUMBERED = re.compile(r"\bnumbered\b|\bnumber (?:the|each|your|all)\b")
_BULLETS = re.compile(r"\bbullet")
_ANY_LIST = re.compile(r"\b(?:as|in) a list\b|\blist (?:form|format)\b")
_LOWER = re.compile(r"\blower[- ]?case\b|\bno capital")
_UPPER = re.compile(r"\bupper[- ]?case\b|\bcapital letters\b|\ball caps\b|\bcaps lock\b")
_SHORTER = re.compile(
    r"\b(?:short|shorter|brief|briefer|briefly|concise|succinct|too long|wordy|verbose|gist)\b"
)
_LONGER = re.compile(r"\b(?:longer|more detail|more detailed|elaborate|expand|in depth|more thorough)\b")
_NUMBERED_LINE = re.compile(r"^\s*\d+[.)]\s+\S", re.M)
_BULLET_LINE = re.compile(r"^\s*[-*•]\s+\S", re.M)
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.M)


def _count(text: str, unit: str) -> int:
    if unit.startswith("word"):
        return len([t for t in text.split() if any(c.isalnum() for c in t)])
    if unit.startswith("sentence"):  # list markers like "1." are not sentence ends
        body = _LIST_MARKER.sub("", text)
        return len([s for s in _SENTENCE_END.split(body) if any(c.isalnum() for c in s)])
    if unit.startswith("line"):
        return len([line for line in text.splitlines() if line.strip()])
    if unit.startswith("bullet"):  # "at least three bullet points": a numbered list is not bullets
        return len(_BULLET_LINE.findall(text))
    return len(_NUMBERED_LINE.findall(text)) + len(_BULLET_LINE.findall(text))  # items, steps, points


def _phrase_cue(answer: str, phrase: str, context: str) -> float | None:
    target = words(phrase)
    if not target:
        return None
    if target == ["a", "question"]:
        return float(answer.rstrip().endswith("?"))
    if target[0] in {"a", "an", "the", "your", "my", "some"}:  # a description ("a summary"), not literal text
        return None
    toks = words(answer)
    # Only the words just before the phrase can negate it ("never say 'X'", not "don't forget to end with 'X'").
    near = " ".join(re.sub(r"\b(?:don't|do not) forget\b", "", context).split()[-5:])
    if _NEG.search(near):
        hit = f" {' '.join(target)} " in f" {' '.join(toks)} "
        return float(not hit)
    if _END_VERB.search(context):
        return float(toks[-len(target) :] == target)
    if _START_VERB.search(context):
        return float(toks[: len(target)] == target)
    return float(f" {' '.join(target)} " in f" {' '.join(toks)} ")


def rule_cues(answer: str, rule: str, original: str = "") -> list[tuple[str, float]]:
    """The checkable cues of one rule, each with its score for `answer`; [] when none applies."""
    low = rule.lower()
    cues: list[tuple[str, float]] = []
    for match in _QUOTED.finditer(rule):
        phrase = match.group(1) or match.group(2)
        value = _phrase_cue(answer, phrase, low[: match.start()])
        if value is not None:
            cues.append((f"'{phrase}'", value))
    if not cues and (m := _UNQUOTED_END.search(low)):
        phrase = m.group(1).strip(" .")
        if 0 < len(phrase.split()) <= 6 and (value := _phrase_cue(answer, phrase, "end with")) is not None:
            cues.append((f"ends with {phrase}" if phrase == "a question" else f"ends with '{phrase}'", value))
    counted = False
    for pattern, kind in ((_MAX, "max"), (_MAX_AFTER, "max"), (_MIN, "min")):
        for m in pattern.finditer(low):
            n, unit = int(_COUNT_WORD.get(m.group(1), m.group(1))), m.group(2)
            have, counted = _count(answer, unit), True
            ok = have <= n if kind == "max" else have >= n
            value = 1.0 if ok else (n / have if kind == "max" else have / max(n, 1))
            cues.append((f"{kind} {n} {unit} (has {have})", value))
    if _NUMBERED.search(low):
        cues.append(("numbered list", min(1.0, len(_NUMBERED_LINE.findall(answer)) / 3)))
    elif _BULLETS.search(low):
        cues.append(("bullet list", min(1.0, len(_BULLET_LINE.findall(answer)) / 3)))
    elif _ANY_LIST.search(low):
        cues.append(("list", min(1.0, _count(answer, "items") / 3)))
    letters = [c for c in answer if c.isalpha()]
    if _LOWER.search(low):
        cues.append(("lowercase", float(bool(letters) and not any(c.isupper() for c in letters))))
    elif _UPPER.search(low):
        cues.append(("uppercase", float(bool(letters) and not any(c.islower() for c in letters))))
    base_len = len(words(original))
    if not counted and base_len:
        ratio = len(words(answer)) / base_len
        if _SHORTER.search(low):  # full marks at 60% of the original's length or less
            cues.append((f"shorter ({ratio:.2f}x)", min(1.0, max(0.0, (1.0 - ratio) / 0.4))))
        elif _LONGER.search(low):  # full marks at 1.5x the original's length or more
            cues.append((f"longer ({ratio:.2f}x)", min(1.0, max(0.0, (ratio - 1.0) / 0.5))))
    return cues


def rule_check(answer: str, rules: Sequence[str]) -> bool | None:
    """Pure: whether `answer` passes every checkable cue of `rules` (`rule_cues`); None when no cue applies."""
    cues = [value for rule in rules for _, value in rule_cues(answer, rule)]
    return min(cues) >= 1.0 if cues else None


def follows_rules(answer: str, rules: Sequence[str]) -> bool:
    """Pure: `answer` passes every checkable cue of `rules` (`rule_cues`), and one applies at least."""
    return rule_check(answer, rules) is True


def score(candidate: str, case: JudgeCase) -> Score:
    """Score `candidate` for `case` in [0, 1] (see the module docstring), with a short explanation."""
    candidate = _THINK.sub("", candidate)
    parts: list[tuple[str, float]] = []
    if case.correction and words(case.correction) != words(case.original):
        parts += _edit_parts(candidate, case.original, case.correction)
    rule_values = [cue for rule in case.rules for cue in rule_cues(candidate, rule, case.original)]
    if rule_values:
        mean = sum(v for _, v in rule_values) / len(rule_values)
        parts.append(("rules: " + ", ".join(f"{name} {v:.2f}" for name, v in rule_values), mean))
    if not parts:
        return Score(0.5, "neutral 0.5: no correction and no checkable rule")
    value = sum(v for _, v in parts) / len(parts)
    return Score(value, "; ".join(f"{name} = {v:.2f}" for name, v in parts) + f" -> {value:.2f}")


# ---- the reference's gates and counting (S8) ----


def length_gate(candidate: str, base: str, min_ratio: float = 0.1) -> bool:
    """Pass unless the candidate is under `min_ratio` x the base answer's length in characters."""
    return len(_THINK.sub("", candidate).strip()) >= min_ratio * len(_THINK.sub("", base).strip())


def bleu(candidate: str, reference: str, max_n: int = 4, brevity: bool = True) -> float:
    """Sentence BLEU-4 (uniform weights, smoothing method1 with epsilon 0.1) on lower-cased
    whitespace tokens; the same numbers as NLTK's sentence_bleu with SmoothingFunction().method1.
    `brevity=False` drops the brevity penalty (n-gram precision only)."""
    hyp, ref = candidate.lower().split(), reference.lower().split()
    if not hyp:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        h = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        r = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        matches = sum(min(c, r[g]) for g, c in h.items())
        if n == 1 and matches == 0:
            return 0.0  # no shared word at all: NLTK returns 0 before smoothing
        total = max(1, sum(h.values()))
        log_sum += math.log((matches if matches else 0.1) / total) / max_n
    penalty = 1.0 if not brevity or len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return penalty * math.exp(log_sum)


def bleu_gate(candidate: str, base: str, threshold: float = 0.05) -> bool:
    """Pass when the candidate is still related to the base answer: BLEU-4 > threshold.

    Without the brevity penalty, unlike the reference: measured on SmolLM2, an adapter that learned a
    sign-off (or "under 40 words") answers shorter, and the penalty alone (exp(1 - 4) = 0.05 at a
    quarter of the length) failed every such answer. Length has its own gate (`length_gate`)."""
    return bleu(_THINK.sub("", candidate), _THINK.sub("", base), brevity=False) > threshold


class Trial(NamedTuple):
    """One held-out log's verdict: the adapter's and the base's scores and whether the gates passed."""

    candidate_score: float
    base_score: float
    gates_pass: bool


def judge_trial(case: JudgeCase, candidate: str, base: str) -> Trial:
    """Score the adapter's answer and the base answer for one held-out log and apply both gates."""
    gates = length_gate(candidate, base) and bleu_gate(candidate, base)
    return Trial(score(candidate, case).value, score(base, case).value, gates)


def win_rate(trials: Iterable[Trial | tuple[float, float, bool]]) -> float:
    """(wins + 0.5 x ties) / N over every held-out log; a failed gate counts as a loss; 0 for none."""
    trials = list(trials)
    if not trials:
        return 0.0
    points = 0.0
    for cand, base, gates_pass in trials:
        if gates_pass and cand > base:
            points += 1.0
        elif gates_pass and cand == base:
            points += 0.5
    return points / len(trials)


def ship_decision(win_rate: float, n_heldout: int, threshold: float, min_heldout: int) -> tuple[bool, str]:
    """Ship only with enough held-out logs and a win rate at or above the threshold (reference `>=`)."""
    if n_heldout < min_heldout:
        return False, f"only {n_heldout} held-out logs, fewer than the {min_heldout} needed to validate"
    if win_rate >= threshold:
        return True, f"won {win_rate:.2f} of {n_heldout} held-out logs (needs {threshold:.2f})"
    return False, f"won only {win_rate:.2f} of {n_heldout} held-out logs (needs {threshold:.2f})"


def score_margin(trials: Iterable[Trial | tuple[float, float, bool]]) -> float:
    """Mean (candidate - base) score over the held-out logs; a failed gate counts as -1."""
    trials = list(trials)
    if not trials:
        return 0.0
    return sum((cand - base) if gates_pass else -1.0 for cand, base, gates_pass in trials) / len(trials)


def best_epoch(
    win_rates_by_epoch: Mapping[int, float] | Sequence[float],
    margins_by_epoch: Mapping[int, float] | None = None,
) -> int:
    """Epoch with the highest win rate; among ties, the one whose answers moved furthest towards the
    user's feedback (the highest mean score margin over the base), then the earliest (least drift).

    With a handful of held-out logs, win rates saturate: an epoch that barely moved from the base can
    tie a well-trained one, and preferring the earliest alone shipped near-untrained adapters."""
    items = (
        win_rates_by_epoch.items()
        if isinstance(win_rates_by_epoch, Mapping)
        else enumerate(win_rates_by_epoch)
    )
    ranked = sorted(items)
    if not ranked:
        raise ValueError("best_epoch needs at least one epoch's win rate.")
    margins = margins_by_epoch or {}
    return max(ranked, key=lambda kv: (kv[1], round(margins.get(kv[0], 0.0), 9), -kv[0]))[0]
