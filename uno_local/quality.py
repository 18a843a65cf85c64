"""Answer quality, pure: repetition, content kept against the base answer, and prompt scaffolding.

- `repetition_share(text)`: share of the word n-grams (n = 3) that repeat an earlier n-gram of the same
  text; 0 for varied prose, towards 1 for a loop ("a bit of a bit of a bit of ...").
- `loops(text)`: whether the answer is a loop: most of its word 3-grams repeat, or most of its lines
  repeat an earlier line (a "- - - -" line forty times has no words to repeat), or it counts instead of
  writing ("-1-1-1-2-1-1-3-2-2-3-4-5-6-...": its 3-grams are all new, and its words are numbers).
- `content_kept(base, answer, ignore)`: share of the base answer's content words (`text.content_words`,
  the habit's own words set aside) that the answer still contains.
- `revision_problem(revised, query, draft, suggestions)`: why a Reflective revision must not be shown
  (it echoes the prompt's headings or lines, or is not a plausible answer), or None when it may.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from uno_local.text import content_words, words

NGRAM = 3
# Headings and instruction lines of the Critic and revision prompts (uno_local/route.py): an answer that
# contains one is echoing the prompt, not answering.
SCAFFOLD_HEADINGS = ("## user question", "## user query", "## initial answer", "## suggestion")
SCAFFOLD_LINES = (
    "revise the initial answer so that it follows the suggestions",
    "output only the full revised answer",
    "write numbered suggestions, one per line",
)
MIN_WORDS_SHARE = 0.05  # under a twentieth of the draft's words is no answer; a "be brief" habit keeps more
MAX_REPETITION = 0.5  # a revision whose 3-grams repeat this much is looping
# An answer of at least NUMBER_RUN_WORDS words, over MAX_NUMBER_SHARE of them numbers, counts instead of
# writing (pet-care's aquarium Expert: "- -1-1-1-2-1-1-3-2-2-3-4-5-6-7-8-...-51", docs/eval.md session 34).
NUMBER_RUN_WORDS = 20
MAX_NUMBER_SHARE = 0.75
_NUMBERED = re.compile(r"^\s*\d+\s*[.)]\s*(\S.*?)\s*$", re.M)


def repetition_share(text: str, n: int = NGRAM) -> float:
    """Share of the text's word n-grams that already occurred earlier in it (0 with fewer than n words)."""
    w = words(text)
    grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def repeated_lines_share(text: str) -> float:
    """Share of the text's non-blank lines that repeat an earlier line (0 with fewer than 4 lines)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 4:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


def number_share(text: str) -> float:
    """Share of the text's words that are numbers (0 with fewer than `NUMBER_RUN_WORDS` words)."""
    w = words(text)
    if len(w) < NUMBER_RUN_WORDS:
        return 0.0
    return sum(word.isdigit() for word in w) / len(w)


def loops(text: str) -> bool:
    """The answer is a loop: over `MAX_REPETITION` of its word 3-grams or of its lines repeat, or over
    `MAX_NUMBER_SHARE` of its words are numbers (a count, not an answer)."""
    return (
        repetition_share(text) > MAX_REPETITION
        or repeated_lines_share(text) > MAX_REPETITION
        or number_share(text) > MAX_NUMBER_SHARE
    )


def content_kept(base: str, answer: str, ignore: Iterable[str] = ()) -> float:
    """Share of the base answer's content words found in `answer`, the habit's words (`ignore`) aside.
    Case, bullets and punctuation never count, so a lowercase or list habit alone keeps 1.0."""
    habit = {w for phrase in ignore for w in words(phrase)}
    wanted = content_words(base) - habit
    if not wanted:
        return 1.0
    return len(wanted & content_words(answer)) / len(wanted)


def scaffolding(text: str, echoes: Iterable[str] = ()) -> str | None:
    """The first piece of prompt scaffolding in `text` (a heading, an instruction line, or one of the
    `echoes`: the query or a critic note repeated as a line of its own), or None."""
    lowered = text.lower()
    for heading in SCAFFOLD_HEADINGS:
        if heading in lowered:
            return heading.lstrip("# ")
    for line in SCAFFOLD_LINES:
        if line in lowered:
            return "the revision prompt's instructions"
    lines = {" ".join(words(line)) for line in text.splitlines()} | {
        " ".join(words(m.group(1))) for m in _NUMBERED.finditer(text)
    }
    for echo in echoes:
        key = " ".join(words(echo))
        if len(key.split()) >= 3 and key in lines:
            return f"a repeated prompt line ({echo.strip()[:40]})"
    return None


def revision_problem(revised: str, query: str, draft: str, suggestions: Iterable[str]) -> str | None:
    """Why the Reflective path must show the draft instead of `revised` (one phrase), or None."""
    if not revised.strip():
        return "the revision came back empty"
    found = scaffolding(revised, [query, *suggestions])
    if found is not None:
        return f"the revision echoes its prompt: {found}"
    n_words, n_draft = len(words(revised)), len(words(draft))
    if n_words < max(3, MIN_WORDS_SHARE * n_draft):
        return f"the revision is too short to be an answer ({n_words} words against the draft's {n_draft})"
    if repetition_share(revised) > max(MAX_REPETITION, repetition_share(draft)):
        return "the revision repeats itself"
    return None
