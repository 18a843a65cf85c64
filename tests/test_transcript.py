"""The Markdown transcript of a conversation, its file name, and an answer's code blocks."""

from __future__ import annotations

import pytest

from uno_local.store import Conversation, ConversationSettings, Feedback, Message
from uno_local.transcript import code_blocks, conversation_markdown, export_name


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("no code here", []),
        ("```python\nx = 1\n```", ["x = 1"]),
        ("a\n```\none\n```\nb\n~~~sh\nls -l\n~~~\n", ["one", "ls -l"]),
        ("````md\n```\ninner\n```\n````", ["```\ninner\n```"]),  # a longer fence holds a shorter one
        ("```\nnever closed", []),
    ],
)
def test_code_blocks(text, blocks):
    assert code_blocks(text) == blocks


def test_transcript_has_the_settings_messages_feedback_and_stopped_answers():
    conversation = Conversation(7, "Eggs", "", "")
    stamp = "2026-01-01T00:00:00"
    messages = [
        Message(1, "u1", 7, "user", "How do I boil an egg?", stamp),
        Message(
            2,
            "u2",
            7,
            "assistant",
            "Boil it.",
            stamp,
            feedback=Feedback(2, -1, "Too short", "Boil 9 min.", stamp, stamp),
        ),
        Message(3, "u3", 7, "user", "And poach?", stamp),
        Message(4, "u4", 7, "assistant", "Simmer the", stamp, complete=False),
    ]
    text = conversation_markdown(conversation, messages, ConversationSettings("Be brief.", 0.3))
    assert text.startswith(
        "# Eggs\n\nExported from uno · conversation 7\n\nSystem prompt: Be brief.\n\nTemperature: 0.3\n"
    )
    assert (
        "## You · #1\n\nHow do I boil an egg?\n\n## uno · #2\n\nBoil it.\n\nRating: 👎\n\nComment: Too short\n\nYour correction:\n\nBoil 9 min.\n"
        in text
    )
    assert text.endswith("## uno · #4\n\nSimmer the\n\n*(stopped: incomplete)*\n")


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("Write a python function that adds two numbers.", "uno-3-write-a-python-function-that-adds-two.md"),
        ("¿?", "uno-3-chat.md"),
        ("Déjà vu", "uno-3-d-j-vu.md"),
    ],
)
def test_export_name_keeps_whole_words(title, name):
    assert export_name(Conversation(3, title, "", "")) == name
