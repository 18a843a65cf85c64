"""Fast start: what each command imports, checked in a fresh interpreter (no timings here:
benchmarks/bench_startup.py measures those)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Seconds to import, each, on 2 cores; no command that does not use one may load it.
MODELS = {"torch", "transformers", "llama_cpp", "sentence_transformers", "peft", "mlx", "mlx_lm"}
DATA = {"pandas", "numpy", "scipy", "matplotlib", "hnswlib"}
UI = {"textual"}

# Run the CLI in-process and write the top-level packages imported by the end (atexit, after click's exit).
PROBE = """
import atexit, json, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted({m.split(".")[0] for m in sys.modules}))))
sys.argv = ["uno", *sys.argv[2:]]
if sys.argv[1:] == ["--import-only"]:
    import uno_local.cli
else:
    from uno_local.cli import main
    main()
"""


def imported(tmp_path: Path, *args: str, home: Path | None = None) -> set[str]:
    out = tmp_path / "modules.json"
    env = {
        **os.environ,
        "UNO_HOME": str(home or tmp_path / "home"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(out.read_text()))


@pytest.mark.parametrize(
    ("args", "forbidden"),
    [
        (["--import-only"], MODELS | DATA | UI | {"pydantic"}),
        (["--help"], MODELS | DATA | UI | {"pydantic"}),
        (["adapters"], MODELS | DATA | UI | {"pydantic"}),
        (["status"], MODELS | UI | {"pandas", "pydantic"}),
    ],
    ids=["import", "help", "adapters", "status"],
)
def test_commands_import_only_what_they_need(tmp_path, args, forbidden):
    loaded = imported(tmp_path, *args)
    assert "uno_local" in loaded
    assert not loaded & forbidden, f"uno {' '.join(args)} imported {sorted(loaded & forbidden)}"


def test_settings_file_loads_the_validator_and_still_no_model(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "uno.toml").write_text("[generation]\ntemperature = 0.5\n")
    loaded = imported(tmp_path, "adapters", home=home)
    assert "pydantic" in loaded  # the probe sees what is imported: this one is, by design
    assert not loaded & (MODELS | DATA | UI)


def test_store_works_when_pandas_and_numpy_are_already_imported(tmp_path):
    """The store hides pandas and numpy from sqlite-utils only when they are not loaded yet."""
    code = (
        "import numpy, pandas, sys; from uno_local.store import Store;"
        "s = Store(sys.argv[1]); print(s.counts()['messages']); s.close();"
        "import sqlite_utils.db as d; print(d.np is numpy, d.pd is pandas)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "u.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True", "True"]
