"""Pair: a log + its rules -> a preference pair (chosen, rejected) for the Expert, or nothing.

chosen = the user's correction when there is one (the most trusted signal); otherwise the best of
a few revisions of the original answer under the rules, kept only if the judge scores it above the
original (the reference never checks this; we do). A satisfied user's answer becomes an SFT example
(chosen = rejected = the answer). rejected is always the original answer.

`fit_to_budget` then makes a pair whose chosen answer is longer than the chat's token limit (a closing
line after an answer that the limit cut off) fit the chat's answer budget: both answers keep the same
complete sentences, so the closing habit arrives within the limit a user's answers have. A chosen
answer within the limit keeps its length, less an unfinished sentence before an appended ending.

`drop_repeated_lines` takes the base model's loops out of both answers first: greedy SmolLM2 answers often
repeat a list item or a paragraph until the token limit ("The answer is:" nine times in the example
scenario's logs), a correction made by editing such an answer keeps the loop, and an Expert trained on
loops answers with them. Both answers lose the same lines, so a pair keeps what the user changed.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from uno_local.distill import FeedbackInput, feedback_text
from uno_local.judge import JudgeCase, score
from uno_local.route import revise_messages
from uno_local.text import words


@dataclass
class Pair:
    chosen: str
    rejected: str
    kind: str  # "correction", "revision", "sft"
    chosen_score: float
    rejected_score: float


Revise = Callable[[list[dict], int], list[str]]  # (messages, n) -> n sampled revisions
CountTokens = Callable[[str], int]

# A trained answer that cannot end within the chat's token limit (generation.max_tokens) is cut to end
# well inside it, as a complete answer does: a habit learned at the limit is cut off in use. At 3/4 the pet-care eval's cat
# answers still ran past the limit (1 of 6 ended with the sign-off); at 1/2, 3 of 6 (docs/eval.md).
ANSWER_BUDGET_SHARE = 0.5
# The end of a sentence or line: terminal punctuation (and closing quotes or brackets) before whitespace.
SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)|\n")


# A list marker at the start of a line: "3.", "3)", "-", "*" or "•", then spaces.
_MARKER = re.compile(r"^(\s*)(?:(\d+)([.)])|[-*•])\s+")


MIN_PREFIX = 20  # a line this long that begins an earlier one is a repeat cut off by the token limit
MIN_WORDS = 3  # shorter lines ("Yes.", "Step one:") may repeat on purpose
_SENTENCE_END = re.compile(r"(?<!\d)[.!?:](?=\s|$)")  # a sentence's end, a number's own dot aside


def _line_key(line: str) -> str:
    """What a line says, its list marker, case and spacing aside ("" for a blank line)."""
    return " ".join(_MARKER.sub("", line).lower().split())


def drop_repeated_lines(text: str) -> str:
    """Pure: `text` without the lines that repeat an earlier line of it (list markers, case and spacing
    aside; a line of `MIN_PREFIX` characters or more that begins an earlier one counts: a repeat the
    token limit cut off), with the blank line before each. Only lines of `MIN_WORDS` words or more
    count, and never inside a code fence: a closing brace, a table rule or a repeated line of code is
    not a loop. Numbered items after a dropped one are renumbered ("1. A / 2. B / 3. B / 4. C", one item
    a line, becomes "1. A / 2. B / 3. C"); a list starts again at an item numbered 1."""
    seen: set[str] = set()
    kept, shift, in_code = [], 0, False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        key, marker = _line_key(line), _MARKER.match(line)
        number = int(marker.group(2)) if marker and marker.group(2) else None
        if number == 1:
            shift = 0
        if in_code or len(words(key)) < MIN_WORDS:
            kept.append(line)
            continue
        if key in seen or (len(key) >= MIN_PREFIX and any(k.startswith(key) for k in seen)):
            shift += number is not None
            while kept and not kept[-1].strip():  # the blank line before a dropped paragraph goes too
                kept.pop()
            continue
        seen.add(key)
        if number is not None and shift:
            line = f"{marker.group(1)}{number - shift}{marker.group(3)}{line[marker.end(3) :]}"
        kept.append(line)
    return "\n".join(kept)


def reformats(answer: str, correction: str | None) -> bool:
    """Pure: the correction says what the answer says, word for word, in another form (list markers,
    lines, emphasis): a correction of form only."""
    if not correction or answer.strip() == correction.strip():
        return False

    def prose(text: str) -> list[str]:
        return [w for line in text.split("\n") for w in words(_line_key(line))]

    return prose(answer) == prose(correction)


def recases(answer: str, correction: str | None) -> bool:
    """Pure: the correction is the answer with only the case of some letters changed ("Paris is old."
    -> "paris is old."): each letter stays in its place, so the two part at every capital, not once."""
    return bool(correction) and correction != answer and correction.strip().lower() == answer.strip().lower()


def parting_sentence(chosen: str, rejected: str) -> str:
    """Pure: the rejected answer up to the end of the sentence in which it parts from the chosen one
    (all of it when it never does). For a correction of form only, the rejected answer a preference is
    learned against: the two share every content word, each in another context (after a list marker in
    the chosen one), and pushing the whole rejected answer down pushes those words down after a marker
    too, leaving the marker alone (`1. 1. 1.…`, docs/eval.md, session 18). A number's own full stop
    ("1. ", "14.4") ends no sentence."""
    parted = len(os.path.commonprefix([chosen, rejected]))
    end = _SENTENCE_END.search(rejected, parted)
    return rejected[: end.end()].rstrip() if end else rejected


def make_pair(
    item: FeedbackInput, rules: list[str], revise: Revise | None, n_revisions: int = 3
) -> Pair | None:
    """The pair one log gives, or None when nothing beats the original (pure: `revise` is passed in)."""
    case = JudgeCase(item.query, item.answer, item.correction, tuple(rules))
    original = score(item.answer, case).value
    if item.correction and item.correction.strip() and item.correction.strip() != item.answer.strip():
        return Pair(item.correction, item.answer, "correction", score(item.correction, case).value, original)
    if not rules:
        if item.rating == 1 and item.answer.strip():
            return Pair(item.answer, item.answer, "sft", original, original)
        return None
    if revise is None or n_revisions < 1:
        return None
    feedback = feedback_text(item)
    messages = revise_messages(item.query, item.answer, [*rules, feedback] if feedback else list(rules))
    candidates = [c.strip() for c in revise(messages, n_revisions)]
    scored = [(score(c, case).value, -i, c) for i, c in enumerate(candidates) if c]
    if not scored:
        return None
    best_score, _, best = max(scored)
    if best_score <= original:
        return None
    return Pair(best, item.answer, "revision", best_score, original)


# How a last line that is complete without a sentence's punctuation starts, besides a list marker
# (`_MARKER`): a heading, a table row, a quote, a code fence (an answer the limit cut inside one cannot
# be told from a finished one).
_WHOLE_LINE_STARTS = ("#", "|", ">", "```")
_FINISHED = re.compile(r"[.!?:;][\"')\]*_]*$")


def ends_mid_sentence(text: str) -> bool:
    """Pure: `text` stops inside a sentence: its last line is prose without closing punctuation, as an
    answer the token limit cut off does ("...as it allows the plant to absorb")."""
    last = text.rstrip().rsplit("\n", 1)[-1]
    whole = _MARKER.match(last) or last.lstrip().startswith(_WHOLE_LINE_STARTS)
    return bool(last.strip()) and not whole and not _FINISHED.search(last)


def divergence(chosen: str, rejected: str) -> int:
    """Where `chosen` starts to differ from `rejected`, moved back to the start of a word both answers
    spell differently (not when `chosen` only adds to `rejected`)."""
    p = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        p += 1
    if p < min(len(chosen), len(rejected)):
        while p > 0 and not chosen[p - 1].isspace() and not chosen[p].isspace():
            p -= 1
    return p


def fit_to_budget(chosen: str, rejected: str, count: CountTokens, limit: int) -> tuple[str, str] | None:
    """Pure: a pair whose `chosen` answer cannot be generated within the chat's token `limit` (a closing
    habit appended to an answer the limit cut off), cut to fit the answer budget (`ANSWER_BUDGET_SHARE` of
    the limit); and one whose user appended an ending to an answer cut off mid-sentence (a shorter limit
    when it was asked, an imported log), without that unfinished sentence: the habit is learned after a
    complete answer, as it must arrive in use, not after a fragment (the example scenario's gardening logs
    end "as it allows the plant to absorb\n\nHappy growing!").

    The text both answers share before their difference is cut after its last complete sentence that
    leaves room for chosen's own ending (at most half the budget); chosen keeps that ending, rejected keeps
    its own (nothing, when the user only appended to it). None when chosen fits the limit after a complete
    answer (it keeps its length), differs early (an opening habit, a rewrite: the trainer's window handles
    those) or has no sentence end to cut at."""
    p = divergence(chosen, rejected)
    shared, c_tail, r_tail = chosen[:p], chosen[p:].strip(), rejected[p:].strip()
    gap = shared[len(shared.rstrip()) :] + chosen[p : len(chosen) - len(chosen[p:].lstrip())]
    if count(chosen) <= limit:
        if r_tail or not c_tail or not ends_mid_sentence(shared):
            return None
        room = count(shared)  # only the unfinished sentence goes
    else:
        budget = int(limit * ANSWER_BUDGET_SHARE)
        room = budget - count(gap + c_tail)
        if count(c_tail) > budget // 2 or count(shared) <= room:
            return None
    ends = [m.end() for m in SENTENCE_END.finditer(shared)]
    body = next((shared[:e].rstrip() for e in reversed(ends) if count(shared[:e].rstrip()) <= room), "")
    if not body:
        return None
    gap = gap or " "
    return body + gap + c_tail, body + (gap + r_tail if r_tail else "")


_ITEM_BREAK = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Edit:
    """What the user's corrections in a cluster do to an answer, the same each time: add a line at its
    end ("append"), words at its start ("prepend"), write it in lowercase ("lowercase"), or put its
    sentences in a list, one an item ("list")."""

    kind: str
    text: str = ""  # what is added, with the separator the user put before or after it; a list's marker

    def apply(self, answer: str) -> str:
        """Pure: `answer` edited as the user edits answers (an empty answer stays empty)."""
        if not answer.strip():
            return answer
        if self.kind == "append":
            return answer.rstrip() + self.text
        if self.kind == "prepend":
            return self.text + answer.lstrip()
        if self.kind == "list":
            return as_list(answer, self.text)
        return answer.lower()

    def describe(self) -> str:
        """Pure: the edit in words, for decisions ("adds 'Hope that helps!' at the end")."""
        if self.kind == "lowercase":
            return "writes it in lowercase"
        if self.kind == "list":
            return f"puts its sentences in a {'numbered' if self.text[0].isdigit() else 'bulleted'} list"
        where = "at the end" if self.kind == "append" else "at the start"
        return f"adds {' '.join(self.text.split())!r} {where}"


def list_marker(text: str) -> str | None:
    """Pure: the marker before the items of a list answer ("- ", "* ", "1. " for a numbered one), when
    every line but one (a lead-in) is an item, and there are two or more; None for any other answer."""
    lines = [line for line in text.split("\n") if line.strip()]
    items = [m for line in lines if (m := _MARKER.match(line))]
    if len(items) < 2 or len(items) < len(lines) - 1:
        return None
    return "1. " if items[0].group(2) else f"{items[0].group(0).strip()} "


def as_list(answer: str, marker: str) -> str:
    """Pure: `answer`'s sentences as list items after `marker` ("1. " numbers them), one a line (old
    markers dropped); a first sentence that ends with a colon stays above the list as its lead-in."""
    items = [
        piece.strip()
        for line in answer.split("\n")
        for piece in _ITEM_BREAK.split(_MARKER.sub("", line).strip())
        if piece.strip()
    ]
    lead = [items.pop(0)] if len(items) > 1 and items[0].endswith(":") else []
    numbered = marker[0].isdigit()
    return "\n".join(
        lead + [f"{i}. {item}" if numbered else f"{marker}{item}" for i, item in enumerate(items, 1)]
    )


def edit_of(answer: str, correction: str | None) -> Edit | None:
    """Pure: the `Edit` that makes `correction` from `answer`, when it is one of its kinds (None for any
    other correction: a rewrite, a cut)."""
    if not correction or not answer.strip() or correction.strip() == answer.strip():
        return None
    body = answer.strip()
    if correction.strip() == body.lower():
        return Edit("lowercase")
    if reformats(answer, correction) and (marker := list_marker(correction)) and not list_marker(answer):
        return Edit("list", marker)
    if correction.lstrip().startswith(body):
        added = correction.lstrip()[len(body) :].rstrip()
        return Edit("append", added) if added.strip() else None
    if correction.rstrip().endswith(body):
        added = correction.rstrip()[: -len(body)].lstrip()
        return Edit("prepend", added) if added.strip() else None
    return None


# The share of a cluster's corrections one edit must make, and the fewest, before new questions are
# answered with it: noise (a correction with another habit) must not set the habit.
EDIT_SHARE = 0.5
MIN_EDITS = 2


def common_edit(corrections: Sequence[tuple[str, str]]) -> Edit | None:
    """Pure: the edit that at least `EDIT_SHARE` of the (answer, correction) pairs make, and at least
    `MIN_EDITS` of them; None when no one edit does (the corrections differ, or are of other kinds)."""
    if not corrections:
        return None
    counts = Counter(e for answer, correction in corrections if (e := edit_of(answer, correction)))
    if not counts:
        return None
    edit, n = counts.most_common(1)[0]
    return edit if n >= MIN_EDITS and n >= EDIT_SHARE * len(corrections) else None
