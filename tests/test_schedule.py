"""`uno schedule`: the job files parse (systemd-analyze where it exists; plistlib; cron's fields),
enable then disable leaves nothing behind for each scheduler, and the nightly job's two checks
(new feedback, the chat not writing). HOME, XDG dirs and PATH point into tmp_path: the real user's
crontab, systemd and launchd are never touched; the platform tools are small scripts with their CLI."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from uno_local import schedule as sched
from uno_local.cli import cli
from uno_local.store import Store

# Stand-ins for the platform tools: they log their arguments; crontab keeps its table in a file.
TOOLS = {
    "systemctl": 'echo "systemctl $*" >> "$TOOL_LOG"',
    "launchctl": 'echo "launchctl $*" >> "$TOOL_LOG"',
    "crontab": """echo "crontab $*" >> "$TOOL_LOG"
case "$1" in
  -l) [ -f "$CRONTAB_FILE" ] || { echo "no crontab for $USER" >&2; exit 1; }; cat "$CRONTAB_FILE" ;;
  -r) rm -f "$CRONTAB_FILE" ;;
  -) cat > "$CRONTAB_FILE" ;;
esac""",
}


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A fake user account: HOME, XDG_CONFIG_HOME and the tools on PATH, all under tmp_path."""
    home = tmp_path / "user"
    (home / ".config").mkdir(parents=True)
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, body in TOOLS.items():
        path = tools / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TOOL_LOG", str(tmp_path / "tools.log"))
    monkeypatch.setenv("CRONTAB_FILE", str(tmp_path / "crontab"))
    return home


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def tool_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "tools.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path):
    for name, text in sched.systemd_units((3, 5), tmp_path / "data dir", sched.job_command()).items():
        (tmp_path / name).write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--user", "uno-retrain.service", "uno-retrain.timer"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert "OnCalendar=*-*-* 03:05:00" in (tmp_path / "uno-retrain.timer").read_text()
    assert (
        'Environment="UNO_HOME=' + str(tmp_path / "data dir") + '"'
        in (tmp_path / "uno-retrain.service").read_text()
    )


def test_launchd_plist_and_cron_line_parse(tmp_path):
    agent = plistlib.loads(sched.launchd_plist((23, 59), tmp_path, ["/py", "-m", "uno_local"]))
    assert agent["StartCalendarInterval"] == {"Hour": 23, "Minute": 59}
    assert agent["EnvironmentVariables"] == {"UNO_HOME": str(tmp_path)} and agent["Nice"] == 19
    line = sched.cron_line((3, 0), tmp_path / "a b", ["/py", "-m", "uno_local", "schedule", "run"])
    minute, hour, day, month, weekday, *rest = line.split()
    assert (minute, hour, day, month, weekday) == ("0", "3", "*", "*", "*")
    assert (
        "nice -n 19" in line and "'" + str(tmp_path / "a b") + "'" in line and line.endswith(sched.CRON_MARK)
    )


@pytest.mark.parametrize("text", ["3", "24:00", "03:60", "noon", "3:5"])
def test_bad_times_are_one_sentence(text):
    with pytest.raises(sched.ScheduleError, match="HH:MM"):
        sched.parse_time(text)


@pytest.mark.parametrize("backend", ["systemd", "launchd", "cron"])
def test_enable_then_disable_leaves_nothing_behind(user, tmp_path, uno_home, backend):
    crontab = tmp_path / "crontab"
    crontab.write_text("15 * * * * echo someone else's job\n")
    before = tree(user)
    found = sched.enable(uno_home, "04:30", backend)
    assert (found.backend, found.at) == (backend, "04:30") and sched.status() == found
    if backend == "systemd":
        assert {f.name for f in found.files} == {"uno-retrain.timer", "uno-retrain.service"}
        assert "systemctl --user enable --now uno-retrain.timer" in tool_calls(tmp_path)
    elif backend == "launchd":
        assert found.files[0].parent == user / "Library" / "LaunchAgents"
    else:
        assert crontab.read_text().splitlines()[0] == "15 * * * * echo someone else's job"
        assert crontab.read_text().splitlines()[1].startswith("30 4 * * * UNO_HOME=")
    # Enabling again moves the job; it never doubles.
    assert sched.enable(uno_home, "05:00", backend).at == "05:00"
    assert sum(line.endswith(sched.CRON_MARK) for line in crontab.read_text().splitlines()) == (
        backend == "cron"
    )

    assert sched.disable().backend == backend
    assert sched.status().backend is None
    assert tree(user) - before == set()
    assert crontab.read_text() == "15 * * * * echo someone else's job\n"
    if backend == "systemd":
        assert "systemctl --user disable --now uno-retrain.timer" in tool_calls(tmp_path)
    assert sched.disable().backend is None  # a second disable is harmless


def test_a_failed_activation_leaves_nothing(user, tmp_path, uno_home):
    (tmp_path / "bin" / "systemctl").write_text("#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n")
    before = tree(user)
    with pytest.raises(sched.ScheduleError, match="Failed to connect to bus"):
        sched.enable(uno_home, "03:00", "systemd")
    assert tree(user) == before and sched.status().backend is None


def test_schedule_cli(user, tmp_path, uno_home):
    runner = CliRunner()
    result = runner.invoke(cli, ["schedule", "enable", "--at", "02:15", "--backend", "cron"])
    assert result.exit_code == 0 and "every night at 02:15 (your crontab)" in result.output
    assert "02:15" in runner.invoke(cli, ["schedule", "status"]).output
    assert runner.invoke(cli, ["schedule", "disable"]).output.strip() == "Overnight learning is off."
    assert "is off" in runner.invoke(cli, ["schedule", "status"]).output
    bad = runner.invoke(cli, ["schedule", "enable", "--at", "25:00"])
    assert bad.exit_code == 1 and "HH:MM" in bad.output and "Traceback" not in bad.output


def test_the_nightly_job_needs_new_feedback_and_an_idle_chat(uno_home, monkeypatch):
    uno_home.mkdir(parents=True, exist_ok=True)
    store = Store(uno_home / "uno.db")
    try:
        assert not sched.has_unlearned_feedback(store)
        cid = store.new_conversation()
        store.add_message(cid, "user", "q?")
        answer = store.add_message(cid, "assistant", "a.")
        store.set_feedback(answer, rating=-1)
        assert sched.has_unlearned_feedback(store)
        store.db.execute(
            "INSERT INTO retrain_runs (started_at, finished_at, status) VALUES (?, ?, 'finished')",
            ["9999-01-01T00:00:00+00:00", "9999-01-01T01:00:00+00:00"],
        )
        store.db.conn.commit()
        assert not sched.has_unlearned_feedback(store)  # learned by that (future-dated) run
        store.db.execute("DELETE FROM retrain_runs")
        store.db.conn.commit()
    finally:
        store.close()

    assert not sched.chat_is_generating(uno_home)
    monkeypatch.setattr("uno_local.cli.schedule_commands.WAIT_FOR_CHAT_S", 0)
    with sched.chat_generating(uno_home):
        assert sched.chat_is_generating(uno_home)
        result = CliRunner().invoke(cli, ["schedule", "run"])
        assert result.exit_code == 0 and "writing an answer" in result.output
    assert not sched.chat_is_generating(uno_home)


def test_the_nightly_job_skips_when_nothing_is_new(uno_home):
    result = CliRunner().invoke(cli, ["schedule", "run"])
    assert (
        result.exit_code == 0 and result.output.strip() == "Nothing new to learn from since the last retrain."
    )
