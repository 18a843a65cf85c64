"""Helpers for the end-to-end learning tests: real model, real trainer, real store, tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from uno_local.cli import cli

# Short logged answers (LOG_TOKENS) keep training to a few minutes on 2 cores; answering allows more
# (the adapter must have room to reach the habit at the end of its answer).
LOG_TOKENS = 64
TEST_CONFIG = """
[generation]
max_tokens = 160

[train]
epochs = 2
max_answer_tokens = 112
max_prompt_tokens = 128
"""


@pytest.fixture(scope="session")
def fresh_torch_threads() -> int:
    """torch's CPU thread count in a fresh process: what a user's retrain trains on."""
    probe = "import torch; print(torch.get_num_threads())"
    return int(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )


@pytest.fixture(scope="module", autouse=True)
def _torch_threads_as_a_user_has_them(fresh_torch_threads):
    """Every end-to-end test trains as a user's retrain does: an earlier test that left torch on another
    thread count (the count is process-wide) would change its adapters (bf16 sums split differently)."""
    import torch

    assert torch.get_num_threads() == fresh_torch_threads, (
        f"an earlier test left torch on {torch.get_num_threads()} threads; a fresh process has {fresh_torch_threads}"
    )


def write_config(home: Path, extra: str = "") -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (home / "uno.toml").write_text(TEST_CONFIG + extra)


def uno(*args: str) -> str:
    """Run the real CLI in-process; fail the test with its stderr if it fails."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, f"uno {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def ask_batch(tmp: Path, queries: list[str], name: str, max_tokens: int | None = None) -> list[dict]:
    src, out = tmp / f"{name}-in.jsonl", tmp / f"{name}-out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "query": q}) + "\n" for i, q in enumerate(queries)))
    limit = ["--max-tokens", str(max_tokens)] if max_tokens else []
    uno("ask", "--batch", str(src), "--out", str(out), *limit)
    return [json.loads(line) for line in out.read_text().splitlines()]
