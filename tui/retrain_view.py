"""The Retrain view (F6): the running retrain's progress per stage with an estimate of the time left,
and the last run's report (what each cluster became, what shipped or was refused and why, and a few
held-out questions answered before and after).
The app's `RetrainState` (fed by the child's progress lines) and the recorded runs in -> text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Label, Static

from uno_local.retrain.pipeline import STAGES
from uno_local.store.learning import RetrainRun, retrain_runs, win_rate_text

EXAMPLES_SHOWN = 3  # held-out questions shown before and after, over all clusters


@dataclass
class StageProgress:
    done: int = 0
    total: int = 0
    started: float = 0.0
    message: str = ""


@dataclass
class RetrainState:
    """What the background retrain reported so far; `stages` fill in pipeline order."""

    started: float = field(default_factory=time.monotonic)
    stages: dict[str, StageProgress] = field(default_factory=dict)
    current: str = ""

    def update(self, stage: str, done: int, total: int, message: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if stage not in self.stages:
            self.stages[stage] = StageProgress(started=now)
        progress = self.stages[stage]
        progress.done, progress.total, progress.message = done, total, message
        self.current = stage


def seconds_left(state: RetrainState, last_stage_seconds: dict[str, float], now: float) -> float | None:
    """The current stage's remaining time at its pace so far, plus the later stages' times in the last
    run; None until the current stage has finished a step (nothing to estimate from)."""
    stage = state.stages.get(state.current)
    if stage is None or stage.done <= 0 or not stage.total:
        return None
    pace = (now - stage.started) / stage.done
    left = pace * max(0, stage.total - stage.done)
    later = STAGES[STAGES.index(state.current) + 1 :] if state.current in STAGES else ()
    return left + sum(float(last_stage_seconds.get(name, 0.0)) for name in later)


def progress_text(state: RetrainState | None, last_stage_seconds: dict[str, float], now: float) -> str:
    if state is None:
        return "No retrain is running. r starts one (ctrl+r in the chat); the chat keeps answering meanwhile."
    lines = []
    for name in STAGES:
        stage = state.stages.get(name)
        if stage is None:
            lines.append(f"  {name:<9} ·")
            continue
        mark = "✓" if stage.total and stage.done >= stage.total else "▸"
        lines.append(f"{mark} {name:<9} {stage.done}/{stage.total}  {stage.message}")
    left = seconds_left(state, last_stage_seconds, now)
    elapsed = now - state.started
    estimate = "estimating…" if left is None else f"about {left:.0f} s left"
    return "\n".join([f"Running for {elapsed:.0f} s, {estimate}", *lines])


def report_text(run: RetrainRun | None) -> str:
    """The last recorded run: what each cluster became and why, or its one-sentence failure."""
    if run is None:
        return "No retrain has run yet."
    when = (run.finished_at or run.started_at)[:16].replace("T", " ")
    summary = run.summary or {}
    if run.status == "failed":
        return f"The last retrain ({when} UTC) failed: {summary.get('error', 'no reason recorded')}"
    if run.status != "finished":
        return f"The last retrain ({when} UTC) did not finish (it stopped during {run.stage or 'its start'})."
    deployed = ", ".join(summary.get("deployed", [])) or "nothing new"
    lines = [
        f"Last retrain, {when} UTC: {summary.get('logs', 0)} logs, {summary.get('seconds', 0):.0f} s; deployed {deployed}."
    ]
    if summary.get("retired"):
        lines.append(f"Retired (trained on feedback you removed): {', '.join(summary['retired'])}.")
    for c in summary.get("clusters", []):
        win = (
            ""
            if c.get("win_rate") is None
            else f", win rate {win_rate_text(c['win_rate'], c.get('route', 'base'))}"
        )
        gap = "-" if c.get("gap") is None else f"{c['gap']:.2f}"
        state = "unchanged" if c.get("reused") else c.get("route", "base")
        lines.append(
            f"  c{c['label']}: {c.get('size', 0)} logs, gap {gap} -> {state}{win}. {c.get('decision', '')}"
        )
    examples = [(c["label"], e) for c in summary.get("clusters", []) for e in c.get("examples") or []]
    if examples:
        lines += ["", "Held-out questions, answered before (base model) and after (the new adapter):"]
    for label, example in examples[:EXAMPLES_SHOWN]:
        lines += [
            f"  c{label} · {one_line(example['query'])}",
            f"    before: {one_line(example['before'])}",
            f"    after:  {one_line(example['after'])}",
        ]
    return "\n".join(lines)


def one_line(text: str, width: int = 160) -> str:
    """`text` on one line, shortened to `width` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def last_stage_seconds(run: RetrainRun | None) -> dict[str, float]:
    finished = run if run and run.status == "finished" and run.summary else None
    return dict(finished.summary.get("stage_seconds", {})) if finished else {}


class RetrainScreen(Screen[None]):
    """Live progress of a background retrain, and the report of the last one."""

    BINDINGS = [
        Binding("r", "start", "Retrain now (in the background)"),
        Binding("escape", "dismiss", "Back to the chat"),
    ]

    def __init__(self, core) -> None:
        super().__init__()
        self.core = core

    def compose(self) -> ComposeResult:
        with Vertical(classes="view"):
            yield Label("Retrain: learning from your feedback", classes="view-title")
            yield Static("", id="retrain-progress", markup=False)
            with VerticalScroll(classes="view-detail-box"):
                yield Static("", id="retrain-report", markup=False)
            yield Label("r retrain now · Esc back (it keeps running)", classes="view-help")

    def on_mount(self) -> None:
        self.refresh_view()
        self.set_interval(1.0, self.refresh_view)

    def refresh_view(self) -> None:
        runs = [r for r in retrain_runs(self.core.store, limit=5) if r.status != "running"]
        last = runs[0] if runs else None
        state = getattr(self.app, "retrain_state", None)
        self.query_one("#retrain-progress", Static).update(
            progress_text(state, last_stage_seconds(last), time.monotonic())
        )
        self.query_one("#retrain-report", Static).update(report_text(last))

    def action_start(self) -> None:
        self.app.action_retrain()
        self.refresh_view()
