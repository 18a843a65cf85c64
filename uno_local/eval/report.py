"""Report output: the report dict (metrics.build_report) -> report.json, two PNG plots, a rich table.

Plots use matplotlib's object API (`Figure`, rendered by Agg when saved as PNG) imported inside the
functions, so importing this module costs nothing and no global pyplot backend is switched.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from uno_local.errors import ConfigError

REPORT_NAME = "report.json"
ADHERENCE_PLOT = "adherence.png"
TOKENS_PLOT = "tokens.png"


@dataclass(frozen=True)
class ReportFiles:
    report: Path
    adherence_plot: Path
    tokens_plot: Path


def write_report(report: dict[str, Any], out_dir: str | Path) -> ReportFiles:
    """Write report.json, adherence.png and tokens.png into `out_dir` (created if missing)."""
    out = Path(out_dir)
    files = ReportFiles(out / REPORT_NAME, out / ADHERENCE_PLOT, out / TOKENS_PLOT)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(report, files.report)
        plot_adherence(report, files.adherence_plot)
        plot_tokens(report, files.tokens_plot)
    except OSError as exc:
        raise ConfigError(
            f"Cannot write the evaluation report to {out} ({exc.strerror or exc}); choose another --out folder."
        ) from exc
    return files


def _write_json(report: dict[str, Any], path: Path) -> None:
    # Write beside the target and rename, so an interrupted run never leaves half a report.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".report-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_adherence(report: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: one group per topic (plus 'overall'), one bar per method, shares from 0 to 1."""
    from matplotlib.figure import Figure

    methods = report["methods"]
    groups = [*report["scenario"]["topics"], "overall"]
    fig = Figure(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.2), dpi=110)
    ax = fig.subplots()
    width = 0.8 / max(1, len(methods))
    for k, (name, entry) in enumerate(methods.items()):
        values = [entry["per_topic"][g] for g in groups[:-1]] + [entry["adherence"]]
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(groups))]
        bars = ax.bar(xs, values, width=width * 0.95, label=name)
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize="x-small", padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.25)  # headroom above 100% for the legend
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("rule adherence on test queries")
    ax.set_title(f"Adherence per topic: {report['scenario']['name']}")
    ax.axvline(len(groups) - 1.5, color="0.7", linewidth=0.8)  # sets 'overall' apart from the topics
    ax.legend(loc="upper left", fontsize="small", ncols=min(4, max(1, len(methods))))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def plot_tokens(report: dict[str, Any], path: str | Path) -> Path:
    """Stacked bars per method: mean prompt and completion tokens per answer, total written on top."""
    from matplotlib.figure import Figure

    methods = report["methods"]
    names = list(methods)
    prompt = [methods[n].get("prompt_tokens_per_answer", methods[n]["tokens_per_answer"]) for n in names]
    completion = [methods[n].get("completion_tokens_per_answer", 0.0) for n in names]
    fig = Figure(figsize=(max(5.0, 1.3 * len(names) + 2), 4.0), dpi=110)
    ax = fig.subplots()
    ax.bar(names, prompt, label="prompt", color="#4C72B0")
    ax.bar(names, completion, bottom=prompt, label="completion", color="#DD8452")
    for i, n in enumerate(names):
        ax.annotate(
            f"{methods[n]['tokens_per_answer']:.0f}",
            (i, methods[n]["tokens_per_answer"]),
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.set_ylabel("tokens per answer (mean)")
    ax.set_title(f"Context cost per answer: {report['scenario']['name']}")
    ax.margins(y=0.12)
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return Path(path)


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def render_table(report: dict[str, Any]) -> Table:
    """One row per method: adherence overall and per topic, control drift, topic answer quality (repeated
    3-grams, looping answers, base content kept), tokens, training time."""
    topics = report["scenario"]["topics"]
    table = Table(title=f"uno eval: {report['scenario']['name']}", title_justify="left")
    table.add_column("method", style="bold")
    table.add_column("adherence", justify="right")
    for topic in topics:
        table.add_column(topic, justify="right")
    table.add_column("controls unchanged", justify="right")
    table.add_column("repeated 3-grams", justify="right")
    table.add_column("loops", justify="right")
    table.add_column("content kept", justify="right")
    table.add_column("tokens/answer", justify="right")
    table.add_column("train s", justify="right")
    for name, entry in report["methods"].items():
        wall = entry.get("training", {}).get("wall_s")
        quality = entry.get("quality", {})
        table.add_row(
            name,
            _share(entry["adherence"]),
            *(_share(entry["per_topic"].get(t)) for t in topics),
            _share(entry["control_unchanged"]),
            _share(quality.get("topic_repetition")),
            str(quality.get("topic_looping", "—")),
            _share(quality.get("topic_content_kept")),
            f"{entry['tokens_per_answer']:.0f}",
            "—" if wall is None else f"{wall:.0f}",
        )
    return table


def render_validator_table(report: dict[str, Any]) -> Table | None:
    """Per topic of the `uno` method: the cluster it routed to, that cluster's route and held-out win rate
    (the validator's prediction) beside the measured test adherence; None when `uno` did not run."""
    figures = report["methods"].get("uno", {}).get("validator_vs_test")
    if not figures:
        return None
    table = Table(title="uno: the validator's prediction against the test", title_justify="left")
    for column in ("topic", "cluster", "routed", "route", "held-out", "validator win rate", "test adherence"):
        table.add_column(column, justify="left" if column in ("topic", "route") else "right")
    for topic, row in figures.items():
        table.add_row(
            topic,
            "—" if row["cluster"] is None else str(row["cluster"]),
            _share(row["routed"]),
            row["route"] or "—",
            "—" if row["heldout"] is None else str(row["heldout"]),
            "—" if row["validator_win_rate"] is None else f"{row['validator_win_rate']:.2f}",
            _share(row["test_adherence"]),
        )
    return table
