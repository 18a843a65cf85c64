"""A conversation as Markdown: (conversation, messages) -> a readable .md transcript, and where the
TUI writes it. Also the code blocks of an answer, for copying."""

from __future__ import annotations

import os
import re
from pathlib import Path

from uno_local.store import Conversation, ConversationSettings, Message

FENCED = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, without their fences, in order."""
    return [m.group(2).rstrip("\n") for m in FENCED.finditer(text)]


def conversation_markdown(
    conversation: Conversation, messages: list[Message], settings: ConversationSettings | None = None
) -> str:
    """The transcript: a title, the conversation's own settings, then each message under its author
    with its id; an answer's feedback and correction follow it, a stopped answer says so."""
    lines = [f"# {conversation.title}", "", f"Exported from uno · conversation {conversation.id}"]
    if settings and settings.system_prompt:
        lines += ["", f"System prompt: {settings.system_prompt}"]
    if settings and settings.temperature is not None:
        lines += ["", f"Temperature: {settings.temperature:g}"]
    for message in messages:
        who = "uno" if message.role == "assistant" else "You"
        lines += ["", f"## {who} · #{message.id}", "", message.content.rstrip()]
        if message.role == "assistant" and not message.complete:
            lines += ["", "*(stopped: incomplete)*"]
        feedback = message.feedback
        if feedback and feedback.rating:
            lines += ["", f"Rating: {'👍' if feedback.rating == 1 else '👎'}"]
        if feedback and feedback.comment:
            lines += ["", f"Comment: {feedback.comment}"]
        if feedback and feedback.correction:
            lines += ["", "Your correction:", "", feedback.correction.rstrip()]
    return "\n".join(lines) + "\n"


def export_folder() -> Path:
    """Where exports go: the folder uno was started from when it can be written, else the home folder."""
    here = Path.cwd()
    return here if os.access(here, os.W_OK) else Path.home()


def export_name(conversation: Conversation) -> str:
    """'uno-12-how-do-i-boil-an-egg.md': the id keeps two conversations with one title apart."""
    words: list[str] = []
    for word in re.findall(r"[a-z0-9]+", conversation.title.lower()):
        if len("-".join([*words, word])) > 40:  # whole words only
            break
        words.append(word)
    return f"uno-{conversation.id}-{'-'.join(words) or 'chat'}.md"
