"""One retrain at a time, and what the last one did: the retrain lock, the run records' summary for
`uno status`, and the trainer backend choice. Light on purpose: `uno status` imports it."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from uno_local.errors import RetrainLockedError
from uno_local.store.learning import RetrainRun

LOCK_FILE = "retrain.lock"


@contextmanager
def retrain_lock(home: Path):
    """Only one retrain at a time, across processes (an OS lock: a crash releases it)."""
    fd = os.open(home / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RetrainLockedError("Another retrain is already running; wait for it to finish.") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def retrain_alive(home: Path) -> bool:
    """Does a process hold the retrain lock now? A killed run's lock went with its process.
    (The probe holds a shared lock for an instant; a retrain starting in that instant is refused.)"""
    path = home / LOCK_FILE
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a shared probe, released at once by close
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def describe_run(run: RetrainRun | None, alive: bool) -> str:
    """Pure: one line on the last run; a "running" record whose process is gone reads as interrupted."""
    if run is None:
        return "never run"
    when = run.started_at[:16].replace("T", " ")
    if run.status == "running":
        if alive:
            return f"running since {when} (stage {run.stage or 'collect'})"
        return f"interrupted during {run.stage or 'collect'} (started {when}); `uno retrain` resumes it"
    summary = run.summary or {}
    if run.status == "finished":
        deployed = summary.get("deployed") or []
        return (
            f"finished {when}: {summary.get('logs', 0)} logs, {len(summary.get('clusters') or [])} clusters, "
            f"{len(deployed)} adapters deployed"
        )
    if run.status == "failed":
        return (
            f"failed during {run.stage or 'collect'} ({when}): {summary.get('error', 'no reason recorded')}"
        )
    return f"{run.status} during {run.stage or 'collect'} ({when})"


def choose_backend(name: str) -> str:
    """auto: MLX on Apple silicon, torch elsewhere."""
    if name != "auto":
        return name
    import platform

    return "mlx" if platform.system() == "Darwin" and platform.machine() == "arm64" else "torch"
