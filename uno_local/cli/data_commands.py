"""`uno import`, `uno export` and `uno status`: the logs in and out, and what is where."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import click

from uno_local import __version__
from uno_local.app import App
from uno_local.cli import cli
from uno_local.imports import FORMATS, read_records
from uno_local.logs import export_file, import_records


def plural(count: int, noun: str) -> str:
    """'1 correction', '2 corrections'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="auto",
    show_default=True,
    help="Log format of FILE.",
)
@click.option("--dry-run", is_flag=True, help="Check every record and count them; import nothing.")
@click.pass_obj
def import_command(app: App, file: Path, fmt: str, dry_run: bool) -> None:
    """Import logs from FILE, all or nothing; known ids are skipped.

    FILE is our JSONL, an llm logs.db, an Open WebUI chat export or its feedback export (detected).
    """
    fmt, records = read_records(file, fmt)
    if dry_run:
        known = sum(app.store.uid_kind(r.uid) == "answer" for r in records)
        rated = sum(r.rating is not None or bool(r.comment or r.correction) for r in records)
        click.echo(
            f"Would import {len(records) - known} logs from {file} ({fmt}; {rated} with feedback, "
            f"{known} already present); nothing was imported."
        )
        return
    result = import_records(app.store, records)
    click.echo(f"Imported {result.added} logs from {file} ({fmt}; {result.skipped} already present).")


@cli.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["logs", "dpo", "sft", "kto"]),
    default="logs",
    show_default=True,
    help="logs (ours, re-importable) or a training set for TRL and mlx-lm.",
)
@click.pass_obj
def export_command(app: App, file: Path, fmt: str) -> None:
    """Export every answered turn with its feedback (or a dpo, sft or kto training set) to a JSONL FILE."""
    if fmt != "logs":
        from uno_local.exports import export_training_set

        count = export_training_set(app.store, fmt, file)
        click.echo(f"Exported {count} {fmt} examples to {file}.")
        return
    count = export_file(app.store, file)
    skipped = app.store.counts()["incomplete"]
    note = f" ({plural(skipped, 'incomplete answer')} skipped: stopped before the end)" if skipped else ""
    click.echo(f"Exported {plural(count, 'log')} to {file}{note}.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show the data dir, model, store counts and learning state."""
    info = {
        "version": __version__,
        "python": platform.python_version(),
        "home": str(app.home),
        "database": str(app.store.path),
        "model": str(app.model_path),
        "counts": app.store.counts(),
    }
    info.update(_learning_status(app))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"uno-local {info['version']}  (Python {info['python']})")
    click.echo(f"Data dir:  {info['home']}")
    click.echo(f"Model:     {info['model']}")
    counts = info["counts"]
    click.echo(
        f"Store:     {counts['conversations']} conversations, {counts['messages']} messages, "
        f"{counts['feedback']} feedback ({plural(counts['corrections'], 'correction')}), {counts['incomplete']} incomplete"
    )
    for key in ("trainer", "adapters", "retrain"):
        if key in info:
            click.echo(f"{key.capitalize() + ':':<10} {info[key]}")


def _learning_status(app: App) -> dict:
    """The trainer that `uno retrain` would use, and what is serving."""
    from uno_local.retrain import choose_backend, describe_run, retrain_alive
    from uno_local.store.learning import last_run

    backend = choose_backend(app.config.train.backend)
    device = app.config.train.device
    if backend == "torch" and device == "auto":
        device = _expected_torch_device()
    active = [r.key for r in app.registry.serving()]
    return {
        "trainer": f"{backend} on {device if backend == 'torch' else 'the MLX default device'}",
        "adapters": (", ".join(active) if active else "none serving (base model)")
        + f" for {app.model_path.name} (base {app.base_id[:12]})",
        "base_id": app.base_id,
        "retrain": describe_run(last_run(app.store), retrain_alive(app.home)),  # the last run
    }


def _expected_torch_device() -> str:
    """The device `auto` picks (cuda, then mps, then cpu), judged from the installed torch build and
    the machine without importing torch, which takes seconds; training checks it again when it starts."""
    import importlib.metadata

    try:
        build = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "cpu (torch is not installed)"
    if platform.system() == "Darwin":
        return "mps" if platform.machine() == "arm64" else "cpu"
    return "cpu" if "+cpu" in build or not Path("/proc/driver/nvidia").exists() else "cuda"
