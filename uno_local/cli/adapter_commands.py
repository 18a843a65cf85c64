"""`uno adapters`: list, roll back, disable, enable and delete learned adapters."""

from __future__ import annotations

import json
from pathlib import Path

import click

from uno_local.app import App
from uno_local.cli import cli
from uno_local.errors import NotFoundError


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def adapters(ctx: click.Context, as_json: bool) -> None:
    """List the learned adapters (every version; * marks what is serving, ! what cannot serve)."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    rows = app.registry.list()
    problems = {r.id: app.registry.problem(r) for r in rows if r.status == "deployed" and r.enabled}
    if as_json:
        click.echo(json.dumps([{**_row_dict(r), "problem": problems.get(r.id)} for r in rows], indent=2))
        return
    if not rows:
        click.echo("No adapters yet: give feedback on some answers, then run `uno retrain`.")
        return
    click.echo(
        f"{'':2}{'name':<16}{'ver':>4}  {'kind':<8}{'status':<10}{'enabled':<9}{'win rate':>9}  sources  created"
    )
    for r in rows:
        mark = ("!" if problems[r.id] else "*") if r.id in problems else " "
        win = r.metrics.get("win_rate")
        win = win if isinstance(win, int | float) else None
        click.echo(
            f"{mark:2}{r.name:<16}{r.version:>4}  {r.kind:<8}{r.status:<10}{'yes' if r.enabled else 'no':<9}"
            f"{'' if win is None else f'{win:.2f}':>9}  {len(r.sources):>7}  {r.created_at[:19]}"
        )
    for problem in filter(None, problems.values()):
        click.echo(f"! not serving: {problem}")


def _row_dict(r) -> dict:
    return {
        "name": r.name,
        "version": r.version,
        "kind": r.kind,
        "cluster": r.cluster,
        "status": r.status,
        "enabled": r.enabled,
        "path": str(r.path),
        "checksum": r.checksum,
        "backend": r.backend,
        "sources": r.sources,
        "metrics": r.metrics,
        "created_at": r.created_at,
    }


@adapters.command()
@click.argument("name")
@click.pass_obj
def rollback(app: App, name: str) -> None:
    """Serve NAME's previous version again (or the base model when there is none)."""
    now = app.registry.rollback(name)
    click.echo(f"{name}: now serving {f'v{now.version}' if now else 'the base model'}.")


@adapters.command()
@click.argument("name")
@click.pass_obj
def disable(app: App, name: str) -> None:
    """Stop serving NAME (its queries go to the base model); keeps every version."""
    app.registry.set_enabled(name, False)
    click.echo(f"{name}: disabled.")


@adapters.command()
@click.argument("name")
@click.pass_obj
def enable(app: App, name: str) -> None:
    """Serve NAME's deployed version again."""
    app.registry.set_enabled(name, True)
    click.echo(f"{name}: enabled.")


@adapters.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete(app: App, name: str, yes: bool) -> None:
    """Delete every version of NAME, files included."""
    app.registry.versions(name)
    if not yes:
        click.confirm(f"Delete every version of {name}?", abort=True)
    count = app.registry.delete(name)
    click.echo(f"{name}: deleted {count} version(s).")


@adapters.command("export")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def export_adapter_command(app: App, name: str, directory: Path) -> None:
    """Write NAME's deployed GGUF adapter, an Ollama Modelfile and a README (llama-server --lora) to DIRECTORY."""
    from uno_local.exports import export_adapter

    app.registry.versions(name)
    record = app.registry.deployed(name)
    if record is None:
        raise NotFoundError(f"{name} has no deployed version to export; `uno adapters` lists its versions.")
    app.registry.verify_file(record)
    for path in export_adapter(record, app.model_path, directory):
        click.echo(str(path))
