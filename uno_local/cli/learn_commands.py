"""`uno retrain`: run the UNO loop with a progress bar per stage and a summary (or --json)."""

from __future__ import annotations

import json
import sys

import click

from uno_local.app import App
from uno_local.cli import cli
from uno_local.errors import ModelError


@cli.command()
@click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "mlx"]),
    default="auto",
    show_default=True,
    help="Trainer backend (auto: MLX on Apple silicon, torch elsewhere).",
)
@click.option("--device", help="Torch device: auto, cuda, mps or cpu.")
@click.option("--epochs", type=int, help="Training epochs (a checkpoint per epoch; the validator picks one).")
@click.option(
    "--recluster", is_flag=True, help="Cluster every log afresh instead of joining existing clusters."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (progress goes to stderr).")
@click.option(
    "--progress-jsonl", is_flag=True, hidden=True, help="Progress as JSON lines on stderr (for the TUI)."
)
@click.pass_obj
def retrain(
    app: App,
    backend: str,
    device: str | None,
    epochs: int | None,
    recluster: bool,
    as_json: bool,
    progress_jsonl: bool,
) -> None:
    """Learn from your feedback: distill, cluster, train, validate and deploy adapters.

    What is deployed keeps serving until new adapters pass validation, except adapters trained on
    feedback you deleted, which retire; an interrupted run resumes from its finished stages next time.
    """
    import psutil

    from uno_local.config import with_override
    from uno_local.models import learn_refusal
    from uno_local.retrain import STAGES, Retrain, RetrainOptions

    if device is not None:  # checked like uno.toml's train.device and train.epochs
        app.config = with_override(app.config, "train.device", device, "--device")
    if epochs is not None:
        app.config = with_override(app.config, "train.epochs", epochs, "--epochs")
    # Before any work: one sentence, nothing touched (the architecture, or the estimated peak memory).
    if refusal := learn_refusal(app.model_path, app.config.train, psutil.virtual_memory().available):
        raise ModelError(refusal)
    if app.config.model.n_threads and not app.config.train.threads:
        app.config.train.threads = app.config.model.n_threads  # --threads bounds training too
    options = RetrainOptions(backend=backend, recluster=recluster)
    if progress_jsonl:

        def emit(event) -> None:
            click.echo(json.dumps(event.__dict__), err=True)

        report = Retrain(app, options, progress=emit).run()
    else:
        progress_out = click.get_text_stream("stderr") if as_json else None
        with StageBars(STAGES, file=progress_out) as bars:
            report = Retrain(app, options, progress=bars.update).run()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
        return
    click.echo(
        f"Learned from {report.logs} logs ({report.pairs} pairs) in {report.seconds:.0f} s with {report.backend}."
    )
    from uno_local.store.learning import win_rate_text

    for c in report.clusters:
        win = "" if c["win_rate"] is None else f", win rate {win_rate_text(c['win_rate'], c['route'])}"
        click.echo(
            f"  cluster {c['label']}: {c['size']} logs, gap {c['gap']:.2f} -> {c['route']}{win}. {c['decision']}"
        )
    click.echo("Deployed: " + (", ".join(report.deployed) if report.deployed else "nothing new"))
    if report.retired:
        click.echo("Retired (trained on feedback you removed): " + ", ".join(report.retired))


class StageBars:
    """One rich progress bar per stage, in pipeline order."""

    def __init__(self, stages: tuple[str, ...], file=None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=file or sys.stdout, stderr=file is not None)
        self.progress = Progress(
            TextColumn("{task.fields[stage]:<9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        )
        self.tasks = {s: self.progress.add_task("", total=None, stage=s, start=False) for s in stages}

    def __enter__(self) -> StageBars:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, event) -> None:
        task = self.tasks[event.stage]
        self.progress.start_task(task)
        self.progress.update(task, completed=event.done, total=event.total, description=event.message[:70])


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def rules(ctx: click.Context, as_json: bool) -> None:
    """List the learned clusters with their rules, gap, route, win rate and adapters."""
    if ctx.invoked_subcommand is not None:
        return
    from uno_local.store.learning import load_clusters, win_rate_text

    app: App = ctx.obj
    rows = load_clusters(app.store)
    if as_json:
        click.echo(json.dumps([{**row.__dict__, "centroid": None} for row in rows], indent=2, default=str))
        return
    if not rows:
        click.echo("No clusters yet: give feedback on some answers, then run `uno retrain`.")
        return
    echo = _wrapping_echo()
    for row in rows:
        gap = "-" if row.gap is None else f"{row.gap:.2f}"
        win = win_rate_text(row.win_rate, row.route)
        veto = "  [vetoed]" if row.vetoed else ""
        echo(
            f"cluster {row.label}: {len(row.members)} logs, gap {gap}{' (high)' if row.high_gap else ''}, "
            f"route {row.route}, win rate {win}, expert {row.expert or '-'}, critic {row.critic or '-'}{veto}",
            "    ",
        )
        edited = " (edited)" if row.user_rules is not None else ""
        for rule in row.effective_rules:
            echo(f"    - {rule}{edited}", "      ")
        if row.decision:
            echo(f"    decision: {row.decision}", "      ")


def _wrapping_echo(tty: bool | None = None, columns: int | None = None):
    """`click.echo` that wraps at word boundaries to the terminal's width with a hanging indent, as
    `git` and `ls` do; output to a pipe or a file keeps one line per item, for scripts."""
    import shutil
    import sys
    import textwrap

    if not (sys.stdout.isatty() if tty is None else tty):
        return lambda text, hang: click.echo(text)
    width = max(40, (columns or shutil.get_terminal_size().columns) - 1)

    def echo(text: str, hang: str) -> None:
        click.echo(textwrap.fill(text, width, subsequent_indent=hang, break_on_hyphens=False))

    return echo


def _cluster(app: App, label: int):
    from uno_local.errors import NotFoundError
    from uno_local.store.learning import load_clusters

    for row in load_clusters(app.store):
        if row.label == label:
            return row
    raise NotFoundError(f"No cluster {label}; `uno rules` lists them.")


@rules.command("edit")
@click.argument("label", type=int)
@click.option(
    "--rule", "new_rules", multiple=True, help="A rule (repeat for several); without it an editor opens."
)
@click.option("--reset", is_flag=True, help="Go back to the distilled rules.")
@click.pass_obj
def rules_edit(app: App, label: int, new_rules: tuple[str, ...], reset: bool) -> None:
    """Edit cluster LABEL's rules.

    At the next retrain the edited rules replace the distilled ones for this cluster's logs: the
    revisions that make its preference pairs follow them, the judge scores its pairs and its held-out
    answers by them, and its Critic learns them; the cluster then trains again. Clustering and the
    gap still use each log's distilled rules.
    """
    from uno_local.store.learning import update_cluster

    row = _cluster(app, label)
    if reset:
        update_cluster(app.store, label, user_rules=None)
        click.echo(f"cluster {label}: back to the distilled rules.")
        return
    if not new_rules:
        text = click.edit("\n".join(row.effective_rules) + "\n")
        if text is None:
            click.echo("No change.")
            return
        new_rules = tuple(line.strip(" -\t") for line in text.splitlines() if line.strip())
    update_cluster(app.store, label, user_rules=list(new_rules))
    click.echo(f"cluster {label}: {len(new_rules)} rules saved; run `uno retrain` to learn with them.")


def _set_veto(app: App, label: int, vetoed: bool) -> None:
    from uno_local.store.learning import update_cluster

    _cluster(app, label)
    update_cluster(app.store, label, vetoed=int(vetoed))


@rules.command("veto")
@click.argument("label", type=int)
@click.pass_obj
def rules_veto(app: App, label: int) -> None:
    """Exclude cluster LABEL: no training, and its queries go to the base model."""
    _set_veto(app, label, True)
    click.echo(f"cluster {label}: vetoed; its queries now go to the base model.")


@rules.command("unveto")
@click.argument("label", type=int)
@click.pass_obj
def rules_unveto(app: App, label: int) -> None:
    """Include cluster LABEL again (it trains at the next retrain)."""
    _set_veto(app, label, False)
    click.echo(f"cluster {label}: included again; run `uno retrain` to train it.")


@cli.command()
@click.argument("message_id", type=int)
@click.pass_obj
def explain(app: App, message_id: int) -> None:
    """Say why answer MESSAGE_ID took its route (cluster, adapter, validation, rules)."""
    msg = app.store.get_message(message_id)
    if msg.role != "assistant":
        raise click.UsageError(f"Message {message_id} is a {msg.role} message; explain takes an answer's id.")
    click.echo(
        f"Message {message_id}: route {msg.route or 'base'}"
        + (f", adapter {msg.adapter}" if msg.adapter else "")
        + (f", cluster {msg.cluster}" if msg.cluster else "")
    )
    click.echo(msg.route_reason or "It was answered before routing existed, by the base model.")
    if msg.cluster is not None:
        from uno_local.errors import NotFoundError

        try:
            row = _cluster(app, int(msg.cluster))
        except NotFoundError:
            click.echo("That cluster no longer exists (a later retrain replaced it).")
            return
        gap = "-" if row.gap is None else f"{row.gap:.2f}"
        click.echo(
            f"Cluster {row.label}: {len(row.members)} logs, gap {gap}, route {row.route}. {row.decision}"
        )
        for rule in row.effective_rules:
            click.echo(f"  - {rule}")
