"""What the user does with the messages of the open conversation, mixed into the app: feedback on an
answer, copying it or its code, regenerating or continuing it, editing and resending a message, the
conversation's own settings, and its Markdown export.

`FeedbackRequested` and the palette's actions in -> store changes, dialogs, and new answers started
through `UnoApp.start_answer`. A change that would lose feedback or more than the one answer asks first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tui.dialogs import ConfirmDialog
from tui.feedback import (
    AnswerActions,
    CommentDialog,
    CorrectionEditor,
    correction_result,
    feedback_line,
    toggled_rating,
)
from tui.learning import WhyScreen, explain_answer
from tui.messages import FeedbackRequested
from uno_local.chat import ChatService, Turn
from uno_local.config import with_override
from uno_local.errors import UnoError
from uno_local.runtime import GenerationSettings
from uno_local.store import ConversationSettings, Message
from uno_local.transcript import code_blocks, conversation_markdown, export_folder, export_name

if TYPE_CHECKING:
    from tui.app import UnoApp

    Base = UnoApp
else:
    Base = object

StartTurn = Callable[[ChatService, GenerationSettings], Turn]


class ConversationActions(Base):
    """The actions on messages and on the open conversation (a mixin of `UnoApp`)."""

    def busy(self) -> bool:
        """True (and says so) while an answer is being written: one answer at a time."""
        if self.live is not None:
            self.notify("An answer is still being written; Esc stops it.", severity="warning")
        return self.live is not None

    # one message: the menus and feedback
    async def on_feedback_requested(self, event: FeedbackRequested) -> None:
        if self.live and self.live.answer_id == event.message_id:
            self.notify("Wait for the answer to finish (or stop it with Esc).", severity="warning")
            return
        message = self.guard(self.core.store.get_message, event.message_id)
        if message is None:
            return
        if event.kind == "menu":
            from tui.conversation_dialogs import QuestionActions

            def chosen(kind: str | None) -> None:
                if kind is not None:
                    self.post_message(FeedbackRequested(message.id, kind))

            menu = AnswerActions if message.role == "assistant" else QuestionActions
            self.push_screen(menu(message.id), chosen)
        elif event.kind == "copy":
            self.copy_text(message)
        elif event.kind == "resend":
            self.edit_and_resend(message)
        elif message.role == "assistant":
            await self.act_on_answer(message, event.kind)

    async def act_on_answer(self, message: Message, kind: str) -> None:
        feedback = message.feedback
        if kind == "why":
            self.push_screen(WhyScreen(explain_answer(self.core, message.id)))
        elif kind == "code":
            self.copy_code(message)
        elif kind == "regenerate":
            self.regenerate(message)
        elif kind == "continue":
            self.continue_answer(message)
        elif kind in ("up", "down"):
            rating = toggled_rating(feedback.rating if feedback else None, 1 if kind == "up" else -1)
            await self.save_feedback(message.id, rating=rating)
        elif kind == "clear" and feedback is not None:

            async def cleared(yes: bool | None) -> None:
                if yes:
                    await self.save_feedback(message.id, rating=None, comment=None, correction=None)

            what = feedback_line(feedback)
            self.push_screen(ConfirmDialog(f"Remove all feedback on answer #{message.id} ({what})?"), cleared)
        elif kind == "comment":

            async def commented(text: str | None) -> None:
                if text is not None:
                    await self.save_feedback(message.id, comment=text)

            initial = (feedback.comment or "") if feedback else ""
            self.push_screen(CommentDialog(initial, cursor_blink=self.cursor_blink), commented)
        elif kind == "correct":
            start = feedback.correction if feedback and feedback.correction else message.content

            async def done(text: str | None) -> None:
                if text is not None:
                    await self.save_feedback(message.id, correction=correction_result(text, message.content))

            self.push_screen(CorrectionEditor(start, cursor_blink=self.cursor_blink), done)

    async def save_feedback(self, message_id: int, **changes: Any) -> None:
        """Write the change, then show the stored result under the message."""
        try:
            self.core.store.set_feedback(message_id, **changes)
            message = self.core.store.get_message(message_id)
        except UnoError as exc:
            self.notify(str(exc), severity="error", title="uno")
            return
        await self.chat_view.update_message(message)
        self.refresh_status()

    # copying
    def copy_text(self, message: Message) -> None:
        """An answer as shown (its correction when it has one), or your message."""
        feedback = message.feedback
        self.copy_to_clipboard(feedback.correction if feedback and feedback.correction else message.content)
        what = "Answer" if message.role == "assistant" else "Message"
        self.notify(f"{what} #{message.id} copied.", title="uno")

    def copy_code(self, message: Message) -> None:
        feedback = message.feedback
        blocks = code_blocks(feedback.correction if feedback and feedback.correction else message.content)
        if not blocks:
            self.notify(
                f"Answer #{message.id} has no code block; y copies the whole answer.", severity="warning"
            )
            return
        self.copy_to_clipboard("\n\n".join(blocks))
        many = f"{len(blocks)} code blocks" if len(blocks) > 1 else "The code block"
        self.notify(f"{many} of answer #{message.id} copied.", title="uno")

    def on_target_answer(self, act: Callable[[Message], None]) -> None:
        """`act` on the selected answer, else the newest shown; a sentence when there is none."""
        answer = self.chat_view.target_answer
        if answer is None:
            self.notify("There is no answer here yet.", severity="warning")
        else:
            act(answer)

    def action_copy_code(self) -> None:
        self.on_target_answer(self.copy_code)

    # new answers in place of old ones
    def action_regenerate(self) -> None:
        self.on_target_answer(self.regenerate)

    def regenerate(self, answer: Message) -> None:
        messages = self.guard(self.core.store.messages, answer.conversation_id) or []
        question = next((m for m in reversed(messages) if m.role == "user" and m.id < answer.id), None)
        if question is None:
            self.notify(f"Answer #{answer.id} answers no message of yours here.", severity="warning")
            return
        self.resend(question, None, messages)

    def action_edit_resend(self) -> None:
        message = self.chat_view.selected_message
        if message is None or message.role != "user":
            shown = [
                w.message for w in self.chat_view.message_widgets if w.message.role == "user" and w.message.id
            ]
            message = shown[-1] if shown else None
        if message is None:
            self.notify("There is no message of yours here to edit yet.", severity="warning")
        else:
            self.edit_and_resend(message)

    def edit_and_resend(self, message: Message) -> None:
        from tui.conversation_dialogs import ResendEditor

        if self.busy():
            return

        def edited(text: str | None) -> None:
            if text is not None and text.strip():
                self.resend(
                    message,
                    text.strip("\n"),
                    self.guard(self.core.store.messages, message.conversation_id) or [],
                )

        self.push_screen(ResendEditor(message.content, cursor_blink=self.cursor_blink), edited)

    def resend(self, question: Message, text: str | None, messages: list[Message]) -> None:
        """Answer `question` again (as `text` if edited); what followed it goes, after asking when that
        is more than its one answer or holds feedback."""
        if self.busy():
            return
        later = [m for m in messages if m.id > question.id]
        rated = [f"#{m.id}" for m in later if m.feedback and not m.feedback.is_empty]
        conversation_id = question.conversation_id

        def go(yes: bool | None = True) -> None:
            if yes:
                self.start_answer(
                    conversation_id,
                    lambda chat, settings: chat.resend(question.id, settings, text),
                    rebuilt=True,
                )

        if len(later) <= 1 and not rated:
            go()
            return
        lost = f", with the feedback on {', '.join(rated)}" if rated else ""
        count = f"the {len(later)} messages" if len(later) > 1 else "the message"
        self.push_screen(
            ConfirmDialog(f"Answer #{question.id} again? This replaces {count} after it{lost}."), go
        )

    def action_continue(self) -> None:
        self.on_target_answer(self.continue_answer)

    def continue_answer(self, answer: Message) -> None:
        if self.busy():
            return
        if answer.complete:
            self.notify(
                f"Answer #{answer.id} is complete; r in its menu writes a new one.", severity="warning"
            )
            return
        shown = self.chat_view.message_widgets
        if not shown or shown[-1].message.id != answer.id:
            self.notify(
                f"Only the last answer can be continued; #{answer.id} has messages after it.",
                severity="warning",
            )
            return
        self.start_answer(
            answer.conversation_id,
            lambda chat, settings: chat.continue_answer(answer.id, settings),
            rebuilt=True,
            prefix=answer.content,
        )

    # the open conversation
    def action_conversation_settings(self) -> None:
        from tui.conversation_dialogs import SettingsDialog

        conversation_id = self.conversation_id
        if conversation_id is None:
            self.notify(
                "No conversation is open; its settings come with its first message.", severity="warning"
            )
            return
        current = self.guard(self.core.store.conversation_settings, conversation_id)
        if current is None:
            return

        def saved(settings: ConversationSettings | None) -> None:
            if settings is None:
                return
            try:
                self.core.store.set_conversation_settings(conversation_id, settings)
            except UnoError as exc:
                self.notify(str(exc), severity="error", title="uno")
                return
            self.notify("Saved; the next answer in this conversation uses them.", title="uno")

        try:
            model = str(self.core.model_path)
        except UnoError:
            model = "none found (uno --model PATH)"

        def check(temperature: float) -> None:  # checked like uno.toml's value
            with_override(self.core.config, "generation.temperature", temperature, "The temperature")

        dialog = SettingsDialog(
            current, model, self.core.config.generation.temperature, check, cursor_blink=self.cursor_blink
        )
        self.push_screen(dialog, saved)

    def action_export(self) -> None:
        """Write the open conversation to a Markdown file and say where it went."""
        if self.conversation_id is None:
            self.notify("No conversation is open to export.", severity="warning")
            return
        store = self.core.store
        try:
            conversation = store.get_conversation(self.conversation_id)
            text = conversation_markdown(
                conversation, store.messages(conversation.id), store.conversation_settings(conversation.id)
            )
            path = export_folder() / export_name(conversation)
            path.write_text(text, encoding="utf-8")
        except UnoError as exc:
            self.notify(str(exc), severity="error", title="uno")
            return
        except OSError as exc:
            self.notify(f"Could not write the export ({exc.strerror or exc}).", severity="error", title="uno")
            return
        self.notify(f"Saved this conversation as Markdown to {path}.", title="uno", timeout=10)
