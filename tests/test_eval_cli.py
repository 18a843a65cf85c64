"""`uno eval --quick` end to end for the methods that need no training (the UNO methods run in
tests/e2e/test_uno_loop.py on the full example scenario)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.cli.eval_commands import QUICK_SCENARIO
from uno_local.eval.runner import quick_scenario, rag_messages
from uno_local.eval.scenario import load_scenario


@pytest.mark.slow  # runs the real model through the eval
def test_quick_eval_base_and_rag(tmp_path, uno_home):
    out, kept = tmp_path / "report", tmp_path / "kept"
    uno_home.mkdir(mode=0o700)  # short answers: this checks the command, not the answers' quality
    (uno_home / "uno.toml").write_text("[generation]\nmax_tokens = 48\n")
    result = CliRunner().invoke(
        cli,
        ["eval", "--quick", "--methods", "base,rag", "--out", str(out), "--keep", str(kept)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"base", "rag"}
    assert report["methods"]["base"]["control_unchanged"] == 1.0  # base against itself
    # RAG pays for its memory in context: more prompt tokens per answer than the base model.
    assert (
        report["methods"]["rag"]["prompt_tokens_per_answer"]
        > report["methods"]["base"]["prompt_tokens_per_answer"]
    )
    assert report["meta"]["quick"] is True and report["meta"]["feedback"]
    assert (out / "adherence.png").exists() and (out / "tokens.png").exists()
    assert "rag" in result.stdout
    assert not (uno_home / "uno.db").exists()  # the user's store was never opened
    # --keep: the run's own data dir stays, private, with the settings it used
    assert (kept / "uno.db").is_file() and kept.stat().st_mode & 0o777 == 0o700
    settings = (kept / "uno.toml").read_text()
    assert (kept / "uno.toml").stat().st_mode & 0o777 == 0o600 and "[train]" in settings
    assert "max_tokens = 48" in settings  # the user's settings, as the run used them
    answers = [r["answer"] for r in report["methods"]["rag"]["extra"]["routes"]]
    assert len(answers) == report["methods"]["rag"]["n_answers"] and all(answers)
    again = CliRunner().invoke(cli, ["eval", "--quick", "--out", str(out), "--keep", str(kept)])
    assert again.exit_code == 2 and "new or empty folder" in again.stderr


def test_quick_subsample_and_rag_prompt():
    scenario = quick_scenario(load_scenario(QUICK_SCENARIO), train=2, test=1, controls=1)
    assert (
        all(len(t.train) == 2 and len(t.test) == 1 for t in scenario.topics) and len(scenario.controls) == 1
    )
    memory = {
        "query": "How do I boil rice?",
        "answer": "Boil it.",
        "comment": "Sign off please.",
        "correction": "Boil it.\nHappy cooking!",
    }
    messages = rag_messages("How do I boil pasta?", [memory])
    assert messages[0]["role"] == "system" and "Happy cooking!" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "How do I boil pasta?"}
    assert rag_messages("q", []) == [{"role": "user", "content": "q"}]


def test_bad_method_and_missing_scenario(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["eval", "--quick", "--methods", "base,magic", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "Unknown method(s) magic" in bad.stderr
    none = runner.invoke(cli, ["eval", "--out", str(tmp_path)])
    assert none.exit_code == 2 and "--scenario" in none.stderr
    broken = tmp_path / "s.json"
    broken.write_text("{")
    result = runner.invoke(cli, ["eval", "--scenario", str(broken), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "s.json" in result.stderr
