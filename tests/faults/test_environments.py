"""Hostile environments: a read-only data dir, a full disk, a damaged database, a symlinked database,
two imports at once, escape sequences in a path, damaged adapters. Each gives one sentence (or works),
loses nothing, and the next command works once the cause is gone.

Read-only and full disks are real: a small tmpfs mounted (and remounted read-only) where this user may
mount (root in a container or CI); elsewhere those cases skip, saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.faults.harness import chats_file, lost_rows, one_sentence_error, record, snapshot
from uno_local.cli import cli
from uno_local.store import Store

COMMANDS = [["status"], ["import", "{records}"], ["export", "{out}"], ["adapters"], ["ask", "hello?"]]


def uno(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr = f"Traceback: {result.exception!r}"
    return result.exit_code, result.stdout, stderr


def records_file(folder: Path, n: int = 50, prefix: str = "r", size: int = 200) -> Path:
    return chats_file(folder / f"{prefix}-{n}.jsonl", n, prefix, "q{i} " + "u" * size, "a" * size)


def _can_mount() -> bool:
    return os.geteuid() == 0 and subprocess.run(["which", "mount"], capture_output=True).returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MB tmpfs; yields (mount point, remount helper)."""
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root; the read-only and disk-full cases run where it is allowed")
    point = tmp_path / "mnt"
    point.mkdir()
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(point)], capture_output=True
    )
    if run.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not allowed here ({run.stderr.decode().strip()})")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True)

    yield point, remount
    subprocess.run(["umount", "-l", str(point)], check=False)


def _seeded_home(point: Path, tmp_path: Path, monkeypatch) -> tuple[Path, dict[str, list[tuple]]]:
    """UNO_HOME at `point`/home, holding 20 imported records; returns it and the snapshot of its tables."""
    home = point / "home"
    monkeypatch.setenv("UNO_HOME", str(home))
    assert uno("import", str(records_file(tmp_path, 20, "seed")))[0] == 0
    return home, snapshot(home / "uno.db")


def test_read_only_data_dir(tmpfs, tmp_path, monkeypatch):
    point, remount = tmpfs
    home, before = _seeded_home(point, tmp_path, monkeypatch)
    remount("ro")
    try:
        for args in COMMANDS:
            args = [a.format(records=records_file(tmp_path, 3, "ro"), out=tmp_path / "o.jsonl") for a in args]
            code, _, stderr = uno(*args)
            ok = (
                code == 1
                and one_sentence_error(stderr)
                and ("writable" in stderr or "cannot be written" in stderr)
            )
            record("env: read-only data dir", failed=not ok)
            assert ok, (args, code, stderr)
    finally:
        remount("rw")
    assert snapshot(home / "uno.db") == before
    assert uno("status")[0] == 0


def _refused_as_disk_full(command: str, *args: str) -> None:
    """`uno command *args` fails with one sentence saying the disk is full (counted as a fault tried)."""
    code, _, stderr = uno(command, *args)
    ok = code == 1 and one_sentence_error(stderr) and "is full" in stderr
    record(f"env: disk full ({command})", failed=not ok)
    assert ok, stderr


def test_full_disk(tmpfs, tmp_path, monkeypatch):
    point, _ = tmpfs
    home, before = _seeded_home(point, tmp_path, monkeypatch)
    filler = point / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # the disk is full
    finally:
        os.close(fd)
    _refused_as_disk_full("import", str(records_file(tmp_path, 400, "full", size=2000)))
    _refused_as_disk_full("export", str(point / "out.jsonl"))
    assert not list(point.glob(".*.uno-partial"))
    _refused_as_disk_full("ask", "--max-tokens", "4", "hello?")
    # A full disk is not a damaged database: status works or says the disk is full.
    code, _, stderr = uno("status")
    ok = (code == 0 or ("is full" in stderr and one_sentence_error(stderr))) and "damaged" not in stderr
    record("env: disk full (status)", failed=not ok)
    assert ok, stderr
    filler.unlink()
    after = snapshot(home / "uno.db")
    assert after == before and lost_rows(before, after) == 0
    assert uno("import", str(records_file(tmp_path, 5, "after")))[0] == 0


def _damage(db: Path, pages: int = 16) -> None:
    """Overwrite `pages` pages in the middle of the file (the tester's mid-file corruption)."""
    size = db.stat().st_size
    page = 4096
    start = (size // page // 2) * page
    with db.open("r+b") as handle:
        handle.seek(start)
        handle.write(os.urandom(page * pages))


def test_damaged_database_is_refused_then_salvaged(tmp_path, uno_home):
    assert uno("import", str(records_file(tmp_path, 600, "big", size=600)))[0] == 0
    db = uno_home / "uno.db"
    with Store(db) as store:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = sum(len(rows) for rows in snapshot(db).values())
    _damage(db)
    for args in COMMANDS:
        args = [a.format(records=records_file(tmp_path, 3, "c"), out=tmp_path / "o.jsonl") for a in args]
        code, _, stderr = uno(*args)
        ok = code == 1 and one_sentence_error(stderr) and "uno doctor --repair" in stderr
        record("env: damaged database", failed=not ok)
        assert ok, (args, code, stderr)
    code, out, _ = uno("doctor")
    assert code == 0 and "DAMAGED" in out and "--repair" in out
    code, out, stderr = uno("doctor", "--repair")
    assert code == 0, stderr
    assert "salvaged" in out and list(uno_home.glob("uno.db.damaged-*"))
    with Store(db) as store:
        assert store.integrity() == ["ok"]
        salvaged = store.counts()["messages"]
    assert salvaged > 0
    assert uno("status")[0] == 0
    assert uno("import", str(records_file(tmp_path, 3, "next")))[0] == 0
    print(f"salvaged {salvaged} messages of the damaged store ({total} rows before the damage)")


def test_symlinked_database_target_keeps_its_mode(tmp_path, uno_home):
    target = tmp_path / "elsewhere.db"
    Store(target).close()
    os.chmod(target, 0o640)
    uno_home.mkdir(mode=0o700, exist_ok=True)
    (uno_home / "uno.db").symlink_to(target)
    assert uno("status")[0] == 0
    assert target.stat().st_mode & 0o777 == 0o640


def test_escape_sequences_in_a_path_are_shown_escaped(tmp_path):
    code, _, stderr = uno("import", str(tmp_path / "\x1b[31mred\x1b[0m.jsonl"))
    assert code == 1 and one_sentence_error(stderr)
    assert "\x1b" not in stderr and "\\x1b[31mred" in stderr


def test_two_imports_at_once_both_succeed(tmp_path, uno_home):
    """Two processes importing big files together: the second waits its turn (BEGIN IMMEDIATE)."""
    env = {**os.environ, "UNO_HOME": str(uno_home)}
    assert uno("status")[0] == 0
    files = [records_file(tmp_path, 3000, p, size=50) for p in ("a", "b", "c", "d")]
    for pair in (files[:2], files[2:]):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "uno_local", "import", str(f)],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for f in pair
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        ok = all(p.returncode == 0 for p in procs)
        record("env: two imports at once", failed=not ok)
        assert ok, errors
    with Store(uno_home / "uno.db") as store:
        assert store.counts()["conversations"] == 12_000


def test_damaged_adapters_are_not_shown_serving(tmp_path, uno_home):
    from uno_local.paths import embedded_chat_model
    from uno_local.registry import Registry

    src = tmp_path / "a.gguf"
    src.write_bytes(b"GGUF" + b"\0" * 64)
    with Store(uno_home / "uno.db") as store:
        registry = Registry(store, uno_home / "adapters")
        for name in ("good", "corrupt", "missing"):
            registry.deploy(
                name=name,
                kind="expert",
                gguf_file=src,
                peft_dir=None,
                base_model=embedded_chat_model().name,  # adapters are listed for the model they serve
                sources=[1],
                metrics={"win_rate": 0.7},
                config={},
            )
        (registry.deployed("corrupt").gguf).write_bytes(b"garbage")
        registry.deployed("missing").gguf.unlink()
        store.db.execute("UPDATE adapters SET metrics = '{not json' WHERE name = 'good'")
        store.db.conn.commit()
    code, out, stderr = uno("adapters")
    assert code == 0, stderr
    marks = {
        line.split()[1]: line[0] for line in out.splitlines()[1:] if not line.startswith("! not serving")
    }
    assert marks == {"good": "*", "corrupt": "!", "missing": "!"}
    assert "not serving" in out
    code, out, stderr = uno("status")
    assert code == 0, stderr
    assert "good@v1" in out and "corrupt@v1" not in out and "missing@v1" not in out


def test_an_unforeseen_error_is_one_sentence_and_a_crash_log(uno_home, tmp_path, monkeypatch):
    from uno_local.cli import data_commands

    def broken(file, fmt):
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(data_commands, "read_records", broken)
    code, _, stderr = uno("import", str(tmp_path / "x.jsonl"))
    assert code == 1 and one_sentence_error(stderr)
    assert "Unexpected RuntimeError: something nobody planned for" in stderr and "crash.log" in stderr
    log = uno_home / "crash.log"
    assert "Traceback" in log.read_text() and log.stat().st_mode & 0o777 == 0o600


def test_doctor_reports_and_repairs_leftovers(uno_home):
    assert uno("status")[0] == 0
    leftover = uno_home / "adapters" / ".staging-dead1234"
    leftover.mkdir(parents=True)
    code, out, _ = uno("doctor")
    assert (
        code == 0 and "Database:  ok" in out and "1 interrupted adapter deploy" in out and "--repair" in out
    )
    assert leftover.exists()
    code, out, _ = uno("doctor", "--repair")
    assert code == 0 and "removed them" in out and not leftover.exists()
    assert "No problems found." in uno("doctor")[1]
