"""`uno serve`: the chat, with its learning loop, behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import contextlib

import click

from uno_local.app import App
from uno_local.cli import cli


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option(
    "--api-key",
    envvar="UNO_API_KEY",
    help="Require 'Authorization: Bearer KEY' (needed when --host is not this machine). Env: UNO_API_KEY.",
)
@click.option(
    "--max-body",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(1024),
    help="Largest request body in bytes.",
)
@click.pass_obj
def serve(app: App, host: str, port: int, api_key: str | None, max_body: int) -> None:
    """Serve the chat as an OpenAI-compatible API (model id "uno") until Ctrl-C.

    Every request is routed like a chat turn (Expert, Reflective or base) and logged, so feedback
    sent to POST /v1/feedback and `uno retrain` learn from it. Set-ups: docs/integrations.md.
    """
    from uno_local.serve.server import ServeOptions, make_server

    options = ServeOptions(host=host, port=port, api_key=api_key, max_body_bytes=max_body)
    server = make_server(app, options)
    app.runtime  # load the model before the first request  # noqa: B018
    click.echo(f"uno serve: http://{host}:{port}/v1 (model id 'uno'); Ctrl-C stops.", err=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled, once stopped
        server.run()
    click.echo("uno serve: stopped.", err=True)
