"""Rule checks and their rewrites: (answer, Check) -> bool, and (answer, Check) -> a passing answer.

Semantics (docs/eval.md has the full table):
- ends_with / starts_with: exact and case-sensitive; surrounding whitespace of the answer and of the value
  is ignored on that side.
- contains / not_contains: case-insensitive; any run of whitespace in the value matches any run of
  whitespace in the answer.
- max_words: words are maximal runs of non-whitespace; at most n of them.
- numbered_list / bullet_list: at least min_items lines of the form "1. x" / "1) x" or "- x" / "* x" / "• x".
- lowercase: the answer is unchanged by str.lower() (letters with no lowercase form, like "ℂ", pass).
- regex / not_regex: re.search(pattern, answer) finds / does not find a match (no flags: use inline ones).

`rewrite` returns a passing answer unchanged; otherwise the check's explicit `rewrite` (when the scenario
gives one) or its built-in rewrite, which keeps as much of the answer as it can. For the built-ins,
check(rewrite(a, s), s) holds for every string a; explicit rewrites are probed when a scenario loads.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uno_local.eval.scenario import Check

# Parameter kinds: "text" = non-empty string, "string" = any string, "count" = positive int,
# "regex" = a string that compiles. The scenario validator reads these tables.
CHECK_PARAMS: dict[str, dict[str, str]] = {
    "ends_with": {"value": "text"},
    "starts_with": {"value": "text"},
    "contains": {"value": "text"},
    "not_contains": {"value": "text"},
    "max_words": {"n": "count"},
    "numbered_list": {"min_items": "count"},
    "bullet_list": {"min_items": "count"},
    "lowercase": {},
    "regex": {"pattern": "regex"},
    "not_regex": {"pattern": "regex"},
}
REWRITE_PARAMS: dict[str, dict[str, str]] = {
    "append": {"text": "text"},
    "prepend": {"text": "text"},
    "replace": {"pattern": "regex", "with": "string"},
    "truncate_words": {"n": "count"},
}
NEEDS_REWRITE = frozenset({"regex", "not_regex"})

# Answers every explicit rewrite must fix; the scenario adds its own texts (queries, feedback).
PROBES: tuple[str, ...] = (
    "",
    "   \n\t ",
    "Yes.",
    "Water them twice a week. Check the soil first! Is it dry?",
    "Here is how:\n1. Mix.\n2. Bake.\n- a bullet\n\nThanks!",
    "Ünïcödé ÆØÅ ß İstanbul — 日本語の答え。 🚀 done",
    " ".join(f"word{i}," for i in range(400)),
)

_NUMBERED = re.compile(r"^[ \t]*\d+[.)][ \t]+\S", re.MULTILINE)
_BULLET = re.compile(r"^[ \t]*[-*•][ \t]+\S", re.MULTILINE)
_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")
_BARE_MARKER = re.compile(r"^(?:\d+[.)]|[-*•])$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\S+")
_FILLER = "…"  # pads a list when the answer has too few words to split into items


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _phrase(value: str) -> re.Pattern[str]:
    """contains/not_contains pattern: case-insensitive, whitespace runs match any whitespace run."""
    return re.compile(r"\s+".join(re.escape(w) for w in value.split()), re.IGNORECASE)


def check(answer: str, spec: Check) -> bool:
    """True when `answer` follows the rule `spec` describes."""
    p, kind = spec.params, spec.type
    if kind == "ends_with":
        return answer.rstrip().endswith(p["value"].strip())
    if kind == "starts_with":
        return answer.lstrip().startswith(p["value"].strip())
    if kind == "contains":
        return _phrase(p["value"]).search(answer) is not None
    if kind == "not_contains":
        return _phrase(p["value"]).search(answer) is None
    if kind == "max_words":
        return len(_WORD.findall(answer)) <= p["n"]
    if kind == "numbered_list":
        return len(_NUMBERED.findall(answer)) >= p["min_items"]
    if kind == "bullet_list":
        return len(_BULLET.findall(answer)) >= p["min_items"]
    if kind == "lowercase":
        return answer == answer.lower()
    if kind == "regex":
        return _compiled(p["pattern"]).search(answer) is not None
    if kind == "not_regex":
        return _compiled(p["pattern"]).search(answer) is None
    raise ValueError(f"unknown check type {kind!r}")


def rewrite(answer: str, spec: Check) -> str:
    """The answer changed as little as needed to pass `spec`; a passing answer comes back unchanged."""
    if check(answer, spec):
        return answer
    if spec.rewrite is not None:
        return apply_rewrite(answer, spec.rewrite)
    p, kind = spec.params, spec.type
    if kind == "ends_with":
        return _add_ending(answer, p["value"].strip())
    if kind == "starts_with":
        return _add_opening(answer, p["value"].strip())
    if kind == "contains":
        return _join(answer.rstrip(), " ".join(p["value"].split()), "\n\n")
    if kind == "not_contains":
        return _remove_phrase(answer, _phrase(p["value"]))
    if kind == "max_words":
        return truncate_words(answer, p["n"])
    if kind == "numbered_list":
        return _as_list(answer, p["min_items"], numbered=True)
    if kind == "bullet_list":
        return _as_list(answer, p["min_items"], numbered=False)
    if kind == "lowercase":
        return answer.lower()
    raise ValueError(f"check type {kind!r} needs an explicit rewrite")


def apply_rewrite(answer: str, spec: dict) -> str:
    """Apply an explicit rewrite {type, ...}: append, prepend, replace or truncate_words."""
    kind = spec["type"]
    if kind == "append":  # literal: the text goes right after the answer's trimmed end
        return answer.rstrip() + spec["text"] if answer.strip() else spec["text"].strip()
    if kind == "prepend":
        return spec["text"] + answer.lstrip() if answer.strip() else spec["text"].strip()
    if kind == "replace":  # every match, once, with re.sub (group references allowed)
        return _compiled(spec["pattern"]).sub(spec["with"], answer)
    if kind == "truncate_words":
        return truncate_words(answer, spec["n"])
    raise ValueError(f"unknown rewrite type {kind!r}")


def first_failing_probe(spec: Check, extra: tuple[str, ...] = ()) -> str | None:
    """The first probe answer whose rewrite still fails the check, or None when all pass."""
    for probe in PROBES + extra:
        if not check(rewrite(probe, spec), spec):
            return probe
    return None


def truncate_words(answer: str, n: int) -> str:
    """Keep at most n words; end at a sentence end keeping at least n/2 words, else close with a full stop."""
    words = list(_WORD.finditer(answer))
    if len(words) <= n:
        return answer
    kept = words[:n]
    # A sentence end that keeps at least half of the n words reads as a finished answer.
    for m in reversed(kept[max(0, (n + 1) // 2 - 1) :]):
        if m.group().rstrip("\"')]»”’").endswith((".", "!", "?")):
            return answer[: m.end()].strip()
    cut = answer[: kept[-1].end()].strip().rstrip(",;:-–—")
    return cut + "." if cut and cut[-1].isalnum() else cut


def _join(first: str, second: str, sep: str) -> str:
    return f"{first}{sep}{second}" if first.strip() and second.strip() else (first + second).strip()


def _norm(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


def _add_ending(answer: str, value: str) -> str:
    """Fix a near-miss last line (same letters, other case or punctuation), else add the value's line."""
    lines = answer.rstrip().split("\n")
    if len(lines) > 1 and _norm(value) and _norm(lines[-1]) == _norm(value):
        return _join("\n".join(lines[:-1]).rstrip(), value, "\n\n")
    return _join(answer.rstrip(), value, "\n\n")


def _add_opening(answer: str, value: str) -> str:
    """Fix a near-miss opening (other case), else put the value in front, joined by a space."""
    body = answer.lstrip()
    if body[: len(value)].lower() == value.lower():
        return value + body[len(value) :]
    return _join(value, body, " ")


def _remove_phrase(answer: str, phrase: re.Pattern[str]) -> str:
    """Delete every match, tidy the spaces left behind, and repeat while removal made a new match."""
    text = answer
    while phrase.search(text):
        text = phrase.sub("", text)
        text = re.sub(r"[ \t]{2,}", " ", text)
        text = re.sub(r"[ \t]+([.,!?;:])", r"\1", text)
        text = re.sub(r"(?m)^[ \t]*[,;:][ \t]*", "", text)  # "As an AI, I ..." leaves ", I ..."
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.split("\n")))
        text = text.strip()
    return text


_CLAUSE_BREAK = re.compile(r"[,;:]\s+")
_CONJUNCTION = re.compile(r"\s+(?=(?:and|but|then|so|or)\s)", re.IGNORECASE)
_CONJUNCTIONS = ("and", "but", "then", "so", "or")


def _split_once(item: str) -> list[str] | None:
    """Split at the clause break nearest the middle; None when there is none.

    Breaks are ", ", "; ", ": " and the space before a conjunction (only when both sides keep two
    words and no conjunction ends the first side). Items are never cut between arbitrary words.
    """
    middle = len(item) / 2
    breaks = [m.end() for m in _CLAUSE_BREAK.finditer(item) if item[m.end() :].strip()]
    for m in _CONJUNCTION.finditer(item):
        before, after = item[: m.start()].split(), item[m.end() :].split()
        if len(before) >= 2 and len(after) >= 3 and before[-1].lower() not in _CONJUNCTIONS:
            breaks.append(m.end())
    if not breaks:
        return None
    at = min(breaks, key=lambda b: abs(b - middle))
    return [part for part in (item[:at].strip().rstrip(",;:"), item[at:].strip()) if part]


def _as_item(text: str) -> str:
    """A split-off clause reads as an item: capital first letter, closing full stop."""
    text = text.rstrip(",;:-–—") or text
    text = text[0].upper() + text[1:]
    return text + "." if text[-1].isalnum() else text


def _as_list(answer: str, min_items: int, numbered: bool) -> str:
    """One item per sentence (old list markers dropped); split at clause breaks, then pad with '…'."""
    items: list[str] = []
    for line in answer.splitlines():
        for piece in _SENTENCE_END.split(_MARKER.sub("", line)):
            piece = _BARE_MARKER.sub("", piece.strip()).strip()  # "2." left inside a run-on list
            if piece:
                items.append(piece)
    # A lead-in such as "Here is how:" stays as a heading above the list.
    heading = items.pop(0) if len(items) > 1 and items[0].endswith(":") else None
    while len(items) < min_items:
        # Split the longest item that can be split; each split shortens it, so this ends.
        splits = [(len(item), i, parts) for i, item in enumerate(items) if (parts := _split_once(item))]
        if not splits:
            break
        _, i, parts = max(splits, key=lambda t: (t[0], -t[1]))
        items[i : i + 1] = parts
    items = [_as_item(item) for item in items] + [_FILLER] * (min_items - len(items))
    lines = [f"{i}. {item}" if numbered else f"- {item}" for i, item in enumerate(items, start=1)]
    return "\n".join(([heading] if heading else []) + lines)
