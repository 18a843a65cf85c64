""" "Retrain now": run `uno retrain` in a separate process and report its progress to the UI.

The chat keeps answering with the current adapters meanwhile; the child uses one thread for
llama.cpp and torch so the chat's own generation keeps a core. Progress arrives as JSON lines on
the child's stderr; the final summary as JSON on its stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from textual.message import Message

from tui.messages import RetrainFinished, RetrainProgress


def retrain_command(model: str | None) -> list[str]:
    command = [sys.executable, "-m", "uno_local"]
    if model:
        command += ["--model", model]
    return [*command, "--threads", "1", "retrain", "--json", "--progress-jsonl"]


def summary_sentence(report: dict) -> str:
    """One line for a toast: what was learned and deployed."""
    routes = [f"c{c['label']} {c['route']}" for c in report.get("clusters", [])]
    deployed = ", ".join(report.get("deployed", [])) or "nothing new"
    return f"Retrain finished in {report.get('seconds', 0):.0f} s: {', '.join(routes) or 'no clusters'}; deployed {deployed}."


def run_retrain(
    home: Path,
    model: str | None,
    post: Callable[[Message], object],
    register: Callable[[subprocess.Popen], None] | None = None,
) -> None:
    """Start the child, relay its progress, and post one RetrainFinished."""
    env = {**os.environ, "UNO_HOME": str(home)}
    proc = subprocess.Popen(
        retrain_command(model),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if register is not None:
        register(proc)
    last_error = ""
    for line in proc.stderr:
        line = line.strip()
        if line.startswith("{"):
            try:
                event = json.loads(line)
                post(RetrainProgress(event["stage"], event["done"], event["total"], event.get("message", "")))
                continue
            except (json.JSONDecodeError, KeyError):
                pass
        if line:
            last_error = line
    out = proc.stdout.read()
    code = proc.wait()
    if code == 0:
        try:
            post(RetrainFinished(summary_sentence(json.loads(out)), failed=False))
        except json.JSONDecodeError:
            post(RetrainFinished("Retrain finished.", failed=False))
    else:
        post(
            RetrainFinished(
                last_error.removeprefix("Error: ") or f"Retrain stopped (exit {code}).", failed=True
            )
        )
