"""`uno schedule`: learn overnight. enable [--at 03:00] installs a nightly job (systemd user timer,
launchd agent or cron), status says where it is, disable removes it; `run` is what the job runs."""

from __future__ import annotations

import contextlib
import os
import time

import click

from uno_local.app import App
from uno_local.cli import cli

WAIT_FOR_CHAT_S = 3600  # how long the nightly job waits for an answer being written to finish
POLL_S = 10


def describe(found) -> str:
    if found.backend is None:
        return "Overnight learning is off; `uno schedule enable` turns it on."
    where = {"systemd": "a systemd user timer", "launchd": "a launchd agent", "cron": "your crontab"}
    files = "".join(f"\n  {path}" for path in found.files)
    return f"Overnight learning is on: every night at {found.at} ({where[found.backend]}).{files}"


@cli.group()
def schedule() -> None:
    """Learn from your feedback every night (a per-user job; nothing runs as root)."""


@schedule.command()
@click.option("--at", "at", default="03:00", show_default=True, help="Time of day, HH:MM (24-hour).")
@click.option(
    "--backend",
    type=click.Choice(["auto", "systemd", "launchd", "cron"]),
    default="auto",
    show_default=True,
    help="The scheduler (auto: launchd on macOS, systemd where it runs, else cron).",
)
@click.pass_obj
def enable(app: App, at: str, backend: str) -> None:
    """Retrain every night at --at, when there is feedback not yet learned from."""
    from uno_local import schedule as sched

    click.echo(describe(sched.enable(app.home, at, backend)))


@schedule.command()
def status() -> None:
    """Say whether and when the nightly retrain runs."""
    from uno_local import schedule as sched

    click.echo(describe(sched.status()))


@schedule.command()
def disable() -> None:
    """Remove the nightly job (files included)."""
    from uno_local import schedule as sched

    found = sched.disable()
    click.echo("Overnight learning is off." if found.backend else "Overnight learning was not on.")


@schedule.command(hidden=True)
@click.pass_context
def run(ctx: click.Context) -> None:
    """What the nightly job runs: retrain at low priority if there is new feedback and the chat is idle."""
    from uno_local import schedule as sched
    from uno_local.cli.learn_commands import retrain

    app: App = ctx.obj
    if not sched.has_unlearned_feedback(app.store):
        click.echo("Nothing new to learn from since the last retrain.")
        return
    waited = 0
    while sched.chat_is_generating(app.home) and waited < WAIT_FOR_CHAT_S:
        time.sleep(POLL_S)
        waited += POLL_S
    if sched.chat_is_generating(app.home):
        click.echo("The chat was writing an answer all along; trying again tomorrow night.")
        return
    with contextlib.suppress(OSError):  # already as low as allowed
        os.nice(19)
    ctx.invoke(
        retrain,
        backend="auto",
        device=None,
        epochs=None,
        recluster=False,
        as_json=False,
        progress_jsonl=False,
    )
