"""`uno import`, `uno export` and `uno status`: the logs in and out, and what is where."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import click

from uno_local import __version__
from uno_local.app import App
from uno_local.cli import cli
from uno_local.logs import export_file, import_file


@cli.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
def import_command(app: App, file: Path) -> None:
    """Import logs from a JSONL FILE (all or nothing; known ids are skipped)."""
    result = import_file(app.store, file)
    click.echo(f"Imported {result.added} logs from {file} ({result.skipped} already present).")


@cli.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
def export_command(app: App, file: Path) -> None:
    """Export every answered turn with its feedback to a JSONL FILE."""
    count = export_file(app.store, file)
    click.echo(f"Exported {count} logs to {file}.")


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
        f"{counts['feedback']} feedback ({counts['corrections']} corrections), {counts['incomplete']} incomplete"
    )
    for key in ("trainer", "adapters"):
        if key in info:
            click.echo(f"{key.capitalize() + ':':<10} {info[key]}")


def _learning_status(app: App) -> dict:
    """The trainer that `uno retrain` would use, and what is serving."""
    from uno_local.retrain import choose_backend

    backend = choose_backend(app.config.train.backend)
    device = app.config.train.device
    if backend == "torch" and device == "auto":
        import importlib.util

        device = "cpu"
        if importlib.util.find_spec("torch") is not None:
            import torch

            device = (
                "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
            )
    active = [r.key for r in app.registry.active()]
    return {
        "trainer": f"{backend} on {device if backend == 'torch' else 'the MLX default device'}",
        "adapters": (", ".join(active) if active else "none serving (base model)")
        + f" for {app.model_path.name} (base {app.base_id[:12]})",
        "base_id": app.base_id,
    }
