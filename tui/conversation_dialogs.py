"""Dialogs on a conversation and your own messages: the actions on a message you wrote, the editor to
edit and resend it, and the conversation's settings (its system prompt and temperature; the model
shown). Each returns what was chosen or written, or None when cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, TextArea

from tui.dialogs import ActionsMenu
from tui.feedback import CorrectionEditor
from uno_local.errors import UnoError
from uno_local.store import ConversationSettings


class QuestionActions(ActionsMenu):
    """What can be done with a message you wrote, one key each; returns the chosen action."""

    HEADING = "Your message"
    BINDINGS = [
        Binding("e", "choose('resend')", "Edit and resend it (a new answer replaces what followed)"),
        Binding("y", "choose('copy')", "Copy it"),
        Binding("escape", "choose(None)", "Back"),
    ]


class ResendEditor(CorrectionEditor):
    """Your message in an editor, to change and send again; returns the new text."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Resend the message as edited"),
        Binding("escape", "cancel", "Cancel: keep the conversation as it is"),
    ]
    HEADING = "Edit your message; its answer is written again"
    HELP = "ctrl+s resends · Esc cancels · ctrl+a selects all"


class SettingsDialog(ModalScreen[ConversationSettings | None]):
    """The open conversation's own system prompt and temperature, and the model that answers."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save the conversation's settings"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(
        self,
        settings: ConversationSettings,
        model: Path | str,
        default_temperature: float,
        check_temperature: Callable[[float], object],
        *,
        cursor_blink: bool = True,
    ) -> None:
        """`check_temperature` raises a `UnoError` sentence for a value uno.toml would refuse."""
        super().__init__()
        self.settings = settings
        self.model = model
        self.default_temperature = default_temperature
        self.check_temperature = check_temperature
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="settings-dialog"):
            yield Label("This conversation's settings", classes="dialog-title")
            yield Label(f"Model: {self.model}", markup=False, id="settings-model")
            yield Label(
                "(for every conversation: uno --model PATH, or model.path in uno.toml)", classes="dialog-note"
            )
            yield Label("System prompt (empty: the model's default)")
            prompt = TextArea(self.settings.system_prompt or "", id="settings-system", soft_wrap=True)
            prompt.cursor_blink = self.cursor_blink
            yield prompt
            yield Label(
                f"Temperature, 0 for the likeliest words (empty: {self.default_temperature:g}, uno.toml's)"
            )
            value = "" if self.settings.temperature is None else f"{self.settings.temperature:g}"
            field = Input(value, id="settings-temperature", placeholder=f"{self.default_temperature:g}")
            field.cursor_blink = self.cursor_blink
            yield field
            yield Label("ctrl+s saves · Esc cancels · Tab moves", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        text = self.query_one("#settings-temperature", Input).value.strip()
        try:
            temperature = float(text) if text else None
            if temperature is not None:
                self.check_temperature(temperature)
        except ValueError:
            self.notify(f"The temperature must be a number such as 0.7, not {text!r}.", severity="error")
            return
        except UnoError as exc:
            self.notify(str(exc), severity="error")
            return
        system = self.query_one("#settings-system", TextArea).text.strip()
        self.dismiss(ConversationSettings(system_prompt=system or None, temperature=temperature))

    def action_cancel(self) -> None:
        self.dismiss(None)
