"""`uno models`: the GGUF chat models found where users keep them (Ollama, LM Studio, HF cache, folders)."""

from __future__ import annotations

import json

import click

from uno_local.app import App
from uno_local.cli import cli
from uno_local.errors import ModelError


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def models(app: App, as_json: bool) -> None:
    """List GGUF models in Ollama, LM Studio, the Hugging Face cache and `[model] folders`.

    Each NAME works as `uno --model NAME` and as `model.path` in uno.toml. Nothing is downloaded.
    """
    from uno_local.models import describe, find_models, search_places

    folders = app.config.model.folders
    rows, unreadable = [], []
    for found in find_models(folders):
        try:
            rows.append(describe(found))
        except ModelError as exc:
            unreadable.append(str(exc))
    if as_json:
        click.echo(json.dumps([_row_dict(r) for r in rows], indent=2))
        return
    if not rows:
        places = ", ".join(str(p) for _, p in search_places(folders))
        click.echo(
            f"No GGUF models found; looked in {places}. Add a folder with `[model] folders` in uno.toml."
        )
    else:
        width = max(len(r.found.name) for r in rows) + 2
        click.echo(f"{'name':<{width}}{'source':<13}{'size':>9}  {'arch':<10}{'quant':<9}template  learns")
        for r in rows:
            click.echo(
                f"{r.found.name:<{width}}{r.found.source:<13}{r.size / 1e9:>7.2f}GB  {r.arch:<10}{r.quant:<9}"
                f"{'yes' if r.chat_template else 'no':<10}{'yes' if r.trainable else 'no'}"
            )
    for line in unreadable:
        click.echo(f"Skipped: {line}", err=True)


def _row_dict(r) -> dict:
    return {
        "name": r.found.name,
        "source": r.found.source,
        "path": str(r.found.path),
        "size": r.size,
        "arch": r.arch,
        "quant": r.quant,
        "chat_template": r.chat_template,
        "trainable": r.trainable,
        "why_not": r.why_not,
    }
