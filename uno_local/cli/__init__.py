"""The `uno` command: the TUI by default, plus ask, import, export, status and the learning commands.

Domain errors (`UnoError`) are printed as one sentence, without a traceback, with a non-zero exit.
Each command's module is imported only when that command runs (or `--help` lists them all), so a
command loads only what it needs.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys

import click

from uno_local import __version__
from uno_local.app import App, Overrides
from uno_local.errors import UnoError


def one_sentence(text: str) -> str:
    """A message fit for a terminal: control characters (escape sequences in a path) shown escaped."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in " ".join(text.split("\n"))
    )


def _unexpected(ctx: click.Context, exc: BaseException) -> str:
    """An unforeseen failure: the traceback goes to crash.log in the data dir, the user gets a sentence."""
    import traceback

    where = "the traceback could not be saved"
    app = ctx.obj if isinstance(ctx.obj, App) else None
    if app is not None:
        try:
            log = app.home / "crash.log"
            with os.fdopen(os.open(log, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600), "a") as handle:
                handle.write("".join(traceback.format_exception(exc)) + "\n")
            where = f"the details are in {log}"
        except OSError:
            pass
    return f"Unexpected {type(exc).__name__}: {exc}; this is a bug in uno-local ({where}), please report it."


# command -> the module in uno_local/cli that defines it (it registers itself on `cli` when imported)
COMMAND_MODULES = {
    "ask": "chat_commands",
    "import": "data_commands",
    "export": "data_commands",
    "status": "data_commands",
    "adapters": "adapter_commands",
    "retrain": "learn_commands",
    "rules": "learn_commands",
    "explain": "learn_commands",
    "eval": "eval_commands",
    "backup": "maintenance_commands",
    "doctor": "maintenance_commands",
    "models": "model_commands",
    "serve": "serve_commands",
    "schedule": "schedule_commands",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMAND_MODULES:
            importlib.import_module(f"{__name__}.{COMMAND_MODULES[name]}")
        return super().get_command(ctx, name)


class UnoGroup(LazyGroup):
    """The one boundary where every command's failure becomes one sentence on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except UnoError as exc:
            click.echo(f"Error: {one_sentence(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except sqlite3.Error as exc:
            from uno_local.store import store_error

            app = ctx.obj if isinstance(ctx.obj, App) else None
            error = store_error(exc, app.home / "uno.db" if app else "uno.db")
            click.echo(f"Error: {one_sentence(str(error))}", err=True)
            sys.exit(error.exit_code)
        except OSError as exc:
            name = f" {exc.filename}" if exc.filename else ""
            click.echo(
                f"Error: {one_sentence(f'{exc.strerror or exc}:{name}')}; check the path and try again.",
                err=True,
            )
            sys.exit(1)
        except Exception as exc:
            click.echo(f"Error: {one_sentence(_unexpected(ctx, exc))}", err=True)
            sys.exit(1)


@click.group(
    cls=UnoGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--model",
    "model",
    metavar="PATH|NAME",
    help="Chat model GGUF, or a name `uno models` lists (default: the embedded SmolLM2-135M).",
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
