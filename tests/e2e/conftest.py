"""Helpers for the end-to-end learning tests: real model, real trainer, real store, tiny data."""

from __future__ import annotations

import json
from pathlib import Path

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
