"""What the user does with what the loop learns, mixed into the app: the learning views (F3-F6), why
an answer took its path (F7), the overnight schedule (palette), "retrain now" (ctrl+r) in a background
process with its progress in the status bar, and the note on retrains that ran while the app was closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work

from tui.adapters_view import AdaptersScreen
from tui.feedback_view import FeedbackScreen
from tui.learning import WhyScreen, explain_answer
from tui.messages import RetrainFinished, RetrainProgress
from tui.retrain import run_retrain
from tui.retrain_view import RetrainScreen, RetrainState, report_text
from tui.rules_view import RulesScreen
from uno_local.errors import UnoError
from uno_local.store.learning import retrain_runs

if TYPE_CHECKING:
    from tui.app import UnoApp

    Base = UnoApp
else:
    Base = object

SCHEDULE_COMMANDS = {
    "on": "Retrain every night at 03:00 when there is new feedback (uno schedule enable)",
    "off": "Stop the nightly retrain (uno schedule disable)",
    "status": "Whether and when the nightly retrain runs (uno schedule status)",
}


class LearningActions(Base):
    """The learning views, the schedule and the background retrain (a mixin of `UnoApp`)."""

    async def action_view(self, name: str) -> None:
        views = {"feedback": FeedbackScreen, "rules": RulesScreen, "adapters": AdaptersScreen}
        if name == "retrain":
            self.push_screen(RetrainScreen(self.core))
            return

        async def closed(jump: object) -> None:
            if isinstance(jump, int):  # the Feedback view's Enter: open the answer in its conversation
                message = self.guard(self.core.store.get_message, jump)
                if message is not None:
                    await self.open_conversation(message.conversation_id, message.id)

        self.push_screen(views[name](self.core), closed)

    def action_why(self) -> None:
        message = self.chat_view.target_answer
        if message is None:
            self.notify("There is no answer here to explain yet.", severity="warning")
            return
        self.push_screen(WhyScreen(explain_answer(self.core, message.id)))

    def action_schedule(self, kind: str) -> None:
        """The palette's overnight-learning setting: the same as `uno schedule enable|disable|status`."""
        from uno_local import schedule

        try:
            if kind == "on":
                found = schedule.enable(self.core.home)
            elif kind == "off":
                found = schedule.disable()
                self.notify(
                    "Overnight learning is off." if found.backend else "Overnight learning was not on."
                )
                return
            else:
                found = schedule.status()
        except UnoError as exc:
            self.notify(str(exc), severity="error", title="uno")
            return
        on = f"on: every night at {found.at} ({found.backend})" if found.backend else "off"
        self.notify(f"Overnight learning is {on}.", title="uno")

    def report_overnight(self) -> None:
        """Say once what the retrains since the last start learned (or why the last one failed)."""
        seen_file = self.core.home / "tui-seen-run"  # the last retrain run reported here
        try:
            first_start = not seen_file.exists()
            seen = 0 if first_start else int(seen_file.read_text() or 0)
            runs = [r for r in retrain_runs(self.core.store, after_id=seen) if r.status != "running"]
            newest = runs[0].id if runs else seen
            if first_start or newest != seen:
                seen_file.write_text(str(newest))
                seen_file.chmod(0o600)
        except (ValueError, OSError, UnoError):
            return
        if runs and not first_start:  # on the very first start there is no "since last time"
            text = report_text(runs[0]).split("\n", 1)[0]
            more = f" ({len(runs)} retrains since the last start.)" if len(runs) > 1 else ""
            self.notify(
                f"{text}{more} F6 shows the report.",
                severity="error" if runs[0].status == "failed" else "information",
                title="While you were away",
                timeout=15,
            )

    # retraining
    def action_retrain(self) -> None:
        if self.retraining:
            self.notify(
                "A retrain is already running; its progress is in the status bar.", severity="warning"
            )
            return
        self.retraining = "retrain: starting…"
        self.refresh_status()
        self.notify(
            "Retraining in the background; keep chatting. The next answer after it uses what it learns.",
            title="uno",
        )
        self.retrain_worker()

    @work(thread=True, exclusive=True, group="retrain")
    def retrain_worker(self) -> None:
        def register(proc) -> None:
            self._retrain_proc = proc

        run_retrain(self.core.home, self.core.config.model.path or None, self.post_message, register)

    def on_retrain_progress(self, event: RetrainProgress) -> None:
        if self.retrain_state is None:
            self.retrain_state = RetrainState()
        self.retrain_state.update(event.stage, event.done, event.total, event.text)
        detail = f" {event.text[:40]}" if event.text else ""
        self.retraining = f"retrain: {event.stage} {event.done}/{event.total}{detail}"
        self.refresh_status()

    def on_retrain_finished(self, event: RetrainFinished) -> None:
        self.retraining = ""
        self.retrain_state = None
        self._retrain_proc = None
        self.notify(
            event.summary,
            severity="error" if event.failed else "information",
            title="uno retrain",
            timeout=10,
        )
        self.refresh_status()
