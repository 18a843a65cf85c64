"""`uno status` and `uno export` wording: counts read as English, and skipped rows are named."""

from __future__ import annotations

import json

from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.store import Store


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_status_counts_corrections_in_the_singular_and_export_names_the_skipped(uno_home, tmp_path):
    store = Store(uno_home / "uno.db")
    try:
        cid = store.new_conversation()
        for question in ("a?", "b?"):
            store.add_message(cid, "user", question)
            answer = store.add_message(cid, "assistant", f"answer to {question}")
        store.set_feedback(answer, correction="a better answer")
        store.add_message(cid, "user", "c?")
        partial = store.start_answer(cid)
        store.finish_answer(partial, "cut sho", complete=False)
    finally:
        store.close()

    status = run("status")
    assert status.exit_code == 0 and "1 feedback (1 correction)," in status.stdout
    out = tmp_path / "out.jsonl"
    result = run("export", str(out))
    assert result.exit_code == 0
    assert f"Exported 2 logs to {out} (1 incomplete answer skipped: stopped before the end)." in result.stdout
    assert len(out.read_text().splitlines()) == 2
    assert json.loads(out.read_text().splitlines()[1])["feedback"]["correction"] == "a better answer"
