"""`uno eval`: replay a simulated user against base, RAG-memory, UNO-Single and UNO; table, JSON, plots."""

from __future__ import annotations

from pathlib import Path

import click

from uno_local.app import App
from uno_local.cli import cli

QUICK_SCENARIO = Path(__file__).resolve().parents[2] / "assets" / "eval" / "quick.json"


@cli.command("eval")
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(path_type=Path),
    help="Scenario JSON (format: docs/eval.md). Default with --quick: assets/eval/quick.json.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for report.json and the plots.",
)
@click.option(
    "--methods",
    default="base,rag,uno-single,uno",
    show_default=True,
    help="Comma-separated methods to run (base always runs: it is the reference).",
)
@click.option("--quick", is_flag=True, help="A small variant for CI: a few queries per topic, fewer epochs.")
@click.option("--backend", type=click.Choice(["auto", "torch", "mlx"]), default="auto", show_default=True)
@click.option("--epochs", type=int, help="Training epochs for the UNO methods.")
@click.option(
    "--keep",
    type=click.Path(path_type=Path),
    help="Run in this new folder and keep it (inspect it with `UNO_HOME=DIR uno rules`); default: a temporary one.",
)
@click.pass_obj
def eval_command(
    app: App,
    scenario_path: Path | None,
    out_dir: Path,
    methods: str,
    quick: bool,
    backend: str,
    epochs: int | None,
    keep: Path | None,
) -> None:
    """Measure whether learning helps this user and hurts nothing, on the embedded models.

    Runs in its own temporary data dir; your data is never touched.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from uno_local.eval.report import render_table, render_validator_table, write_report
    from uno_local.eval.runner import METHODS, quick_scenario, run_eval
    from uno_local.eval.scenario import load_scenario

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        raise click.UsageError(f"Unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    if scenario_path is None:
        if not quick:
            raise click.UsageError("Give --scenario FILE (or --quick for the small built-in scenario).")
        if not QUICK_SCENARIO.is_file():  # assets/ ships with the source checkout, not in the wheel
            raise click.UsageError(
                "The built-in quick scenario is in a source checkout (assets/eval/quick.json); "
                "give --scenario FILE."
            )
        scenario_path = QUICK_SCENARIO
    scenario = load_scenario(scenario_path)
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise click.UsageError(f"--keep needs a new or empty folder; {keep} already holds files.")
    if quick:
        scenario = quick_scenario(scenario)
        epochs = epochs or 2
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        report = run_eval(
            scenario, chosen, progress=progress, backend=backend, epochs=epochs, config=app.config, keep=keep
        )
    report["meta"]["scenario_file"] = str(scenario_path)
    report["meta"]["quick"] = quick
    files = write_report(report, out_dir)
    console = Console()
    console.print(render_table(report))
    if (validator_table := render_validator_table(report)) is not None:
        console.print(validator_table)
    click.echo(f"Wrote {files.report}, {files.adherence_plot} and {files.tokens_plot}.")
