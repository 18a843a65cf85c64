"""Distill: a log's feedback -> rules for future answers; and predict: a query -> the model's own rules.

Both ask the local model for `{"rules": [...]}` under a JSON-schema grammar, then validate what
comes back: a distilled rule must be about the feedback (it shares a content word with it, more
than with the answer), placeholders and copies of the answer are dropped. When nothing usable is
left, the comment's own sentences (and what the correction visibly changed) become the rules.
A satisfied user (thumbs-up, no text) gets no rules. The user's next message counts as implicit
feedback when it reads like feedback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from uno_local.text import content_words

MAX_RULES = 5
# Plain strings: a length-bounded string grammar ({8,90}) made llama.cpp's sampling about 8x slower;
# the token limit bounds the output instead, and `clean` drops what is too short or too long.
RULE_SCHEMA = {
    "type": "object",
    "properties": {"rules": {"type": "array", "maxItems": 3, "items": {"type": "string"}}},
    "required": ["rules"],
}
DISTILL_SYSTEM = (
    "You read a user's feedback on an assistant's answer and write the rules that future answers to "
    'similar questions should follow. Reply only with JSON {"rules": [...]}: each rule one short, positive '
    "instruction taken from the feedback. If the user was satisfied or said nothing specific, "
    'reply {"rules": []}.'
)
PREDICT_SYSTEM = (
    "Before answering a question, list the rules a good answer to it should follow, covering what the "
    'user asks for and what they probably need. Reply only with JSON {"rules": [...]}: at most 5 short, '
    "positive instructions."
)
FEEDBACK_CUES = re.compile(
    r"\b(shorter|longer|too|please|instead|don't|do not|wrong|again|more|less|no,|not what|rather|"
    r"in (english|french|spanish|german)|format|list|bullet|sign|end with|start with)\b",
    re.IGNORECASE,
)
PLEASANTRY = re.compile(r"^(thanks?|thank you|ok(ay)?|great|nice|cool|good|perfect|meh|hmm+|lol)[.!]*$", re.I)


@dataclass
class FeedbackInput:
    """What distillation sees of one log."""

    query: str
    answer: str
    rating: int | None = None
    comment: str | None = None
    correction: str | None = None
    next_user: str | None = None


@dataclass
class RuleSet:
    rules: list[str]
    source: str  # "model", "fallback", "satisfied", "none"
    raw: str = ""  # what the model returned, for provenance
    feedback_text: str = ""
    notes: list[str] = field(default_factory=list)


JsonGenerate = Callable[[list[dict], dict], str]  # (messages, schema) -> raw model text


def is_implicit_feedback(next_user: str | None) -> bool:
    """Does the user's next message read like a reaction to the answer (not a new question)?"""
    return bool(next_user) and bool(FEEDBACK_CUES.search(next_user)) and len(next_user.split()) <= 40


def feedback_text(item: FeedbackInput) -> str:
    parts = [item.comment or ""]
    if is_implicit_feedback(item.next_user):
        parts.append(item.next_user or "")
    return "\n".join(p.strip() for p in parts if p and p.strip())


def correction_rules(answer: str, correction: str | None) -> list[str]:
    """Rules that describe what a correction visibly changed (a sign-off, an opening, shortening...)."""
    if not correction or correction.strip() == answer.strip():
        return []
    a, c = answer.strip(), correction.strip()
    rules = []
    if c.startswith(a) and len(c) > len(a):
        rules.append(f'End the answer with "{c[len(a) :].strip()[:80]}".')
    elif c.endswith(a) and len(c) > len(a):
        rules.append(f'Start the answer with "{c[: len(c) - len(a)].strip()[:80]}".')
    n_a, n_c = len(a.split()), len(c.split())
    if n_c <= 0.6 * n_a:
        rules.append(f"Keep the answer under {max(5, round(n_c * 1.2 / 5) * 5)} words.")
    if c == c.lower() and a != a.lower():
        rules.append("Write the answer in lowercase.")
    lines = [line.strip() for line in c.splitlines() if line.strip()]
    if sum(bool(re.match(r"^\d+[.)]\s", line)) for line in lines) >= 2 and not re.search(
        r"^\d+[.)]\s", a, re.M
    ):
        rules.append("Answer as a numbered list.")
    elif sum(line.startswith(("- ", "* ", "• ")) for line in lines) >= 2 and not re.search(
        r"^[-*•]\s", a, re.M
    ):
        rules.append("Answer as a bullet list.")
    return rules


def sentences(text: str) -> list[str]:
    """The comment's own sentences, pleasantries and one-word reactions dropped."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", text or "")
    return [p.strip() for p in parts if len(p.split()) >= 2 and not PLEASANTRY.match(p.strip())]


def parse_rules(raw: str) -> list[str] | None:
    """The rule strings in the model's JSON, or None when it is not valid JSON of that shape."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return None
    rules = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        return None
    return rules


def clean(rules: list[str], limit: int = MAX_RULES) -> list[str]:
    """Drop placeholders and duplicates; keep at most `limit`."""
    out: list[str] = []
    for rule in rules:
        rule = " ".join(rule.split()).strip(" -•*")
        if (
            not 2 <= len(rule.split()) <= 30
            or not content_words(rule)
            or re.fullmatch(r"(rule|item)\s*\d*\.?", rule, re.I)
        ):
            continue
        if rule.lower() not in {r.lower() for r in out}:
            out.append(rule)
    return out[:limit]


def about_feedback(rule: str, feedback: str, answer: str) -> bool:
    """A distilled rule must come from the feedback, not from the answer it criticises."""
    rule_words, fb_words = content_words(rule), content_words(feedback)
    from_feedback = len(rule_words & fb_words)
    from_answer = len((rule_words & content_words(answer)) - fb_words)
    return from_feedback >= 1 and from_feedback >= from_answer


def distill_rules(item: FeedbackInput, generate: JsonGenerate | None) -> RuleSet:
    """Rules for one log (pure: the model is passed in as `generate`)."""
    text = feedback_text(item)
    from_correction = correction_rules(item.answer, item.correction)
    if not text and not from_correction:
        source = "satisfied" if item.rating == 1 else "none"
        return RuleSet([], source, feedback_text="")
    raw = ""
    model_rules: list[str] = []
    if generate is not None and text:
        # The answer is left out on purpose: with it in the prompt the 135M model copied answer
        # sentences into "rules" (and long strings make grammar sampling slow); see docs/design.md.
        prompt = f"## Question\n{item.query}\n\n## User feedback\n{text}"
        raw = generate(
            [{"role": "system", "content": DISTILL_SYSTEM}, {"role": "user", "content": prompt}], RULE_SCHEMA
        )
        parsed = parse_rules(raw) or []
        model_rules = [r for r in clean(parsed) if about_feedback(r, text, item.answer)]
    if model_rules:
        return RuleSet(clean(model_rules + from_correction), "model", raw, text)
    fallback = clean(sentences(text) + from_correction)
    return RuleSet(fallback, "fallback" if fallback else "none", raw, text)


def predict_rules(query: str, generate: JsonGenerate | None) -> RuleSet:
    """The rules the model would apply to `query` on its own (its prior), at most 5."""
    if generate is None:
        return RuleSet([], "none")
    raw = generate(
        [{"role": "system", "content": PREDICT_SYSTEM}, {"role": "user", "content": query}], RULE_SCHEMA
    )
    rules = clean(parse_rules(raw) or [])
    return RuleSet(rules, "model" if rules else "none", raw)
