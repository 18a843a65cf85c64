"""The one tokenizer and stopword list that distillation and the judge share."""

from __future__ import annotations

import pytest

from uno_local.text import STOPWORDS, content_words, words


@pytest.mark.parametrize(
    ("text", "tokens", "content"),
    [
        (
            "Don't repeat the 'question'!",
            ["don't", "repeat", "the", "question"],
            {"don't", "repeat", "question"},
        ),
        ("Please keep the answer SHORT.", ["please", "keep", "the", "answer", "short"], {"short"}),
        ("Add a tip, e.g. 3 eggs", ["add", "a", "tip", "e", "g", "3", "eggs"], {"add", "tip", "eggs"}),
        ("", [], set()),
    ],
)
def test_words_and_content_words(text, tokens, content):
    assert words(text) == tokens and content_words(text) == content


def test_one_list_covers_both_former_lists():
    assert {"answer", "please", "keep", "more", "the", "which", "there"} <= STOPWORDS
