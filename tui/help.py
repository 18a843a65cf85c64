"""The help screen: every key binding of the app, read from the widgets' BINDINGS so it cannot drift.
Binding classes in -> a table per screen region.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

KEY_NAMES = {
    "question_mark": "?",
    "plus": "+",
    "minus": "-",
    "escape": "Esc",
    "enter": "Enter",
    "delete": "Delete",
    "up": "↑",
    "down": "↓",
    "tab": "Tab",
    "home": "Home",
    "end": "End",
    "slash": "/",
}

# Plainer words for the bindings Textual's Screen brings along.
DESCRIPTIONS = {
    "app.focus_next": "Move to the next region",
    "app.focus_previous": "Move to the previous region",
    "screen.copy_text": "Copy the selected text",
}


@dataclass(frozen=True)
class KeyRow:
    keys: str
    description: str


def key_label(key: str) -> str:
    """How one key is written for people: 'ctrl+up' -> 'ctrl+↑', 'f1' -> 'F1', 'plus' -> '+'."""
    *mods, last = key.split("+") if key not in ("plus", "minus") else [key]
    last = last.upper() if last.startswith("f") and last[1:].isdigit() else KEY_NAMES.get(last, last)
    return "+".join([*mods, last])


def binding_rows(bindings: list[BindingType]) -> list[KeyRow]:
    """One row per binding (all its keys together), in declaration order; system bindings left out."""
    rows = []
    for entry in bindings:
        binding = entry if isinstance(entry, Binding) else Binding(*entry)
        if binding.system:
            continue
        keys = " / ".join(key_label(k.strip()) for k in binding.key.split(","))
        rows.append(KeyRow(keys, DESCRIPTIONS.get(binding.action) or binding.description or binding.action))
    return rows


def binding_sections() -> list[tuple[str, list[KeyRow]]]:
    """Every region of the app with its keys; the test checks that no bound key is missing."""
    from tui.adapters_view import AdaptersScreen
    from tui.app import UnoApp
    from tui.chat_view import ChatView
    from tui.conversation_dialogs import QuestionActions, ResendEditor, SettingsDialog
    from tui.dialogs import ConfirmDialog, RenameDialog
    from tui.feedback import AnswerActions, CommentDialog, CorrectionArea, CorrectionEditor
    from tui.feedback_view import FeedbackScreen
    from tui.learning import WhyScreen
    from tui.prompt import PromptInput
    from tui.retrain_view import RetrainScreen
    from tui.rules_view import RulesEditor, RulesScreen
    from tui.sidebar import ConversationList

    return [
        ("Anywhere", binding_rows([*UnoApp.BINDINGS, *Screen.BINDINGS])),
        ("Prompt (where you type)", binding_rows(PromptInput.BINDINGS)),
        (
            "Messages (ctrl+↑ / ctrl+↓ to get here; typing goes to the prompt)",
            binding_rows(ChatView.BINDINGS),
        ),
        ("A selected answer (Enter on it)", binding_rows(AnswerActions.BINDINGS)),
        ("A selected message of yours (Enter on it)", binding_rows(QuestionActions.BINDINGS)),
        ("Edit and resend", binding_rows([*ResendEditor.BINDINGS, *CorrectionArea.BINDINGS])),
        ("Conversation settings (F8)", binding_rows(SettingsDialog.BINDINGS)),
        ("Conversation list (ctrl+o)", binding_rows(ConversationList.BINDINGS)),
        ("Comment dialog", binding_rows(CommentDialog.BINDINGS)),
        ("Correction editor", binding_rows([*CorrectionEditor.BINDINGS, *CorrectionArea.BINDINGS])),
        ("Why this answer (F7)", binding_rows(WhyScreen.BINDINGS)),
        ("Feedback view (F3)", binding_rows(FeedbackScreen.BINDINGS)),
        ("Rules view (F4)", binding_rows([*RulesScreen.BINDINGS, *RulesEditor.BINDINGS])),
        ("Adapters view (F5)", binding_rows(AdaptersScreen.BINDINGS)),
        ("Retrain view (F6)", binding_rows(RetrainScreen.BINDINGS)),
        ("Rename dialog", binding_rows(RenameDialog.BINDINGS)),
        ("Confirm dialog", binding_rows(ConfirmDialog.BINDINGS)),
        ("This help", binding_rows(HelpScreen.BINDINGS)),
    ]


def help_table(sections: list[tuple[str, list[KeyRow]]]) -> Group:
    """A titled two-column table per section; the key column has one width so all sections align."""
    parts: list[Text | Table] = []
    key_width = max(len(row.keys) for _, rows in sections for row in rows)
    for title, rows in sections:
        parts.append(Text(title, style="bold underline"))
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0), expand=True)
        table.add_column("keys", style="bold", no_wrap=True, width=key_width)
        table.add_column("does", ratio=1)
        for row in rows:
            table.add_row(Text(row.keys), Text(row.description))
        parts += [table, Text("")]
    return Group(*parts[:-1])


class HelpScreen(ModalScreen[None]):
    """All keys, grouped by where they work."""

    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close the help")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"):
            yield Label("uno · keys", classes="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(help_table(binding_sections()), id="help-table")
            yield Label("↑/↓ scroll · Esc closes", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()
