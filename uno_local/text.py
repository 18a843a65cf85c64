"""Words: the one tokenizer and the one stopword list, shared by distillation and the judge."""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Function words, plus words every feedback uses ("answer", "please", "keep", "more"), which would
# otherwise tie a rule to its feedback or decide a judge's verdict on their own.
_STOPWORDS = (
    "a about an and answer answers are as at be been but by can could did do does for from give had "
    "has have he her his how i if in into is it it's its just keep less make me more my no not of "
    "on or our please she should so than that the their them then there these they this those to "
    "too use very was we were what when which who why will with would yes you your "
)
STOPWORDS = frozenset(_STOPWORDS.split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, inner apostrophes), in order."""
    return WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
    """The words that carry meaning: longer than two letters and not stopwords."""
    return {w for w in words(text) if len(w) > 2 and w not in STOPWORDS}
