"""The `uno` command: the TUI by default, plus ask, import, export, status and the learning commands.

Domain errors (`UnoError`) are printed as one sentence, without a traceback, with a non-zero exit.
"""

from __future__ import annotations

import sys

import click

from uno_local import __version__
from uno_local.app import App, Overrides
from uno_local.errors import UnoError


class UnoGroup(click.Group):
    """Turns UnoError into one sentence on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UnoError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(
    cls=UnoGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--model", "model", metavar="PATH", help="Chat model GGUF (default: the embedded SmolLM2-135M)."
)
@click.option("--threads", type=int, help="CPU threads for generation (default: all cores).")
@click.option("--ctx", "n_ctx", type=int, help="Context window in tokens.")
@click.version_option(__version__, prog_name="uno")
@click.pass_context
def cli(ctx: click.Context, model: str | None, threads: int | None, n_ctx: int | None) -> None:
    """uno-local: a private chat app that learns from your feedback, on this machine.

    Run without a command to open the chat (TUI). Data lives in the user data dir
    (UNO_HOME overrides it); settings in uno.toml there.
    """
    app = App.open(Overrides(model=model, threads=threads, n_ctx=n_ctx))
    ctx.obj = app
    ctx.call_on_close(app.close)
    if ctx.invoked_subcommand is None:
        from tui.app import run_tui

        run_tui(app)


def main() -> None:
    cli(prog_name="uno")


# The command modules register themselves on `cli`.
from uno_local.cli import (  # noqa: E402, F401
    adapter_commands,
    chat_commands,
    data_commands,
    eval_commands,
    learn_commands,
    schedule_commands,
)
