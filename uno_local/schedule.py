"""Overnight learning: a per-user job that runs `uno schedule run` (-> `uno retrain`) every night.

(time, data dir) -> a systemd user timer on Linux, a launchd agent on macOS, or a crontab line where
neither exists. The job retrains at low priority, only when there is feedback not yet learned from,
and not while the chat is writing an answer (the chat holds a shared lock on `generating.lock`).
Rendering the job files is pure; installing them is a thin shell over the platform's own tools.
"""

from __future__ import annotations

import fcntl
import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from uno_local.errors import ScheduleError
from uno_local.store import Store
from uno_local.store.learning import retrain_runs

NAME = "uno-retrain"
LAUNCHD_LABEL = "local.uno-local.retrain"
CRON_MARK = "# uno-local overnight retrain"
GENERATING_LOCK = "generating.lock"


def parse_time(text: str) -> tuple[int, int]:
    """'03:00' -> (3, 0); a clear sentence for anything else."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleError(f"--at takes a time of day as HH:MM (24-hour), such as 03:00, not {text!r}.")
    return int(match[1]), int(match[2])


def job_command() -> list[str]:
    """What the job runs: this Python, on this data dir (UNO_HOME is set beside it)."""
    return [sys.executable, "-m", "uno_local", "schedule", "run"]


# the job files (pure)
def systemd_units(at: tuple[int, int], home: Path, command: list[str]) -> dict[str, str]:
    """The service (one retrain, niced, idle I/O) and its daily timer; Persistent catches up a missed night."""
    hour, minute = at
    exec_start = " ".join(shlex.quote(part) for part in command)
    service = f"""[Unit]
Description=uno-local: learn from your feedback (uno retrain)

[Service]
Type=oneshot
Environment="UNO_HOME={home}"
ExecStart={exec_start}
Nice=19
IOSchedulingClass=idle
"""
    timer = f"""[Unit]
Description=uno-local: retrain every night at {hour:02d}:{minute:02d}

[Timer]
OnCalendar=*-*-* {hour:02d}:{minute:02d}:00
Persistent=true

[Install]
WantedBy=timers.target
"""
    return {f"{NAME}.service": service, f"{NAME}.timer": timer}


def launchd_plist(at: tuple[int, int], home: Path, command: list[str]) -> bytes:
    hour, minute = at
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": command,
        "EnvironmentVariables": {"UNO_HOME": str(home)},
        "StartCalendarInterval": {"Hour": hour, "Minute": minute},
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "Nice": 19,
        "StandardErrorPath": str(home / "schedule.log"),
    }
    return plistlib.dumps(agent)


def cron_line(at: tuple[int, int], home: Path, command: list[str]) -> str:
    hour, minute = at
    run = " ".join(shlex.quote(part) for part in command)
    log = shlex.quote(str(home / "schedule.log"))
    return (
        f"{minute} {hour} * * * UNO_HOME={shlex.quote(str(home))} nice -n 19 {run} >>{log} 2>&1 {CRON_MARK}"
    )


# where they go
def systemd_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def launchd_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def choose_backend(name: str = "auto") -> str:
    """launchd on macOS; a systemd user timer where systemd runs; else cron."""
    if name != "auto":
        if name not in ("systemd", "launchd", "cron"):
            raise ScheduleError(f"Unknown scheduler {name!r}; use systemd, launchd or cron.")
        return name
    if sys.platform == "darwin":
        return "launchd"
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        return "systemd"
    if shutil.which("crontab"):
        return "cron"
    raise ScheduleError(
        "No scheduler found here (systemd, launchd or cron); run `uno retrain` yourself, or install cron."
    )


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise ScheduleError(f"Could not run {command[0]}: {exc.strerror}.") from None
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ScheduleError(
            f"`{' '.join(command)}` failed: {detail[-1] if detail else f'exit {done.returncode}'}."
        )
    return done


def _crontab() -> list[str]:
    done = _run("crontab", "-l", check=False)
    return done.stdout.splitlines() if done.returncode == 0 else []  # exit 1: no crontab yet


def _set_crontab(lines: list[str]) -> None:
    if not lines:
        _run("crontab", "-r", check=False)
        return
    done = subprocess.run(["crontab", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise ScheduleError(f"crontab refused the new line: {done.stderr.strip() or done.returncode}.")


# install, look, remove (the shells)
@dataclass
class ScheduleStatus:
    backend: str | None  # None: not scheduled
    at: str | None = None
    files: tuple[Path, ...] = ()


def enable(home: Path, at: str = "03:00", backend: str = "auto") -> ScheduleStatus:
    """Install (or move) the nightly job; on failure nothing stays behind."""
    when = parse_time(at)
    kind = choose_backend(backend)
    disable()  # one schedule at a time, whichever scheduler held it
    command = job_command()
    if kind == "systemd":
        folder = systemd_dir()
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in systemd_units(when, home, command).items():
            (folder / name).write_text(text)
        try:
            _run("systemctl", "--user", "daemon-reload")
            _run("systemctl", "--user", "enable", "--now", f"{NAME}.timer")
        except ScheduleError:
            disable()
            raise
    elif kind == "launchd":
        path = launchd_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(launchd_plist(when, home, command))
        try:
            _run("launchctl", "load", "-w", str(path))
        except ScheduleError:
            disable()
            raise
    else:
        _set_crontab([*_crontab(), cron_line(when, home, command)])
    return status()


def status() -> ScheduleStatus:
    """Which scheduler holds the job, and at what time."""
    timer = systemd_dir() / f"{NAME}.timer"
    if timer.is_file():
        match = re.search(r"OnCalendar=\*-\*-\* (\d\d:\d\d)", timer.read_text())
        return ScheduleStatus("systemd", match[1] if match else None, (timer, timer.with_suffix(".service")))
    plist = launchd_path()
    if plist.is_file():
        when = plistlib.loads(plist.read_bytes()).get("StartCalendarInterval", {})
        return ScheduleStatus("launchd", f"{when.get('Hour', 0):02d}:{when.get('Minute', 0):02d}", (plist,))
    if shutil.which("crontab"):
        for line in _crontab():
            if line.endswith(CRON_MARK):
                minute, hour = line.split()[:2]
                return ScheduleStatus("cron", f"{int(hour):02d}:{int(minute):02d}")
    return ScheduleStatus(None)


def disable() -> ScheduleStatus:
    """Remove the job from every scheduler that holds it; returns what was there."""
    found = status()
    if found.backend == "systemd":
        _run("systemctl", "--user", "disable", "--now", f"{NAME}.timer", check=False)
    elif found.backend == "launchd":
        _run("launchctl", "unload", "-w", str(launchd_path()), check=False)
    for path in found.files:
        path.unlink(missing_ok=True)
    if found.backend == "systemd" and shutil.which("systemctl"):
        _run("systemctl", "--user", "daemon-reload", check=False)
    if found.backend == "cron":
        _set_crontab([line for line in _crontab() if not line.endswith(CRON_MARK)])
    return found


# what the job checks before it retrains
def has_unlearned_feedback(store: Store) -> bool:
    """Feedback given or changed since the last finished retrain started (any, if none finished)."""
    finished = [run for run in retrain_runs(store, limit=50) if run.status == "finished"]
    since = finished[0].started_at if finished else ""
    return any(log.feedback.updated_at > since for log in store.logs(with_feedback_only=True))


@contextmanager
def chat_generating(home: Path) -> Iterator[None]:
    """Held (shared) by the chat while it writes an answer; the nightly job waits for it."""
    fd = os.open(home / GENERATING_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def chat_is_generating(home: Path) -> bool:
    path = home / GENERATING_LOCK
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we got
    return False
