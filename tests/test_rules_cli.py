"""`uno rules`: list, edit, veto and unveto clusters; a missing label gives one sentence."""

from __future__ import annotations

from click.testing import CliRunner

from uno_local.cli import cli
from uno_local.store import Store
from uno_local.store.learning import ClusterRow, load_clusters, replace_clusters


def test_rules_veto_edit_and_errors(uno_home):
    uno_home.mkdir(parents=True, exist_ok=True)
    with Store(uno_home / "uno.db") as store:
        replace_clusters(store, [ClusterRow(label=0, centroid=[0.1], members=[1, 2], rules=["Be brief."])])
    runner = CliRunner()
    assert "cluster 0: 2 logs" in runner.invoke(cli, ["rules"]).stdout
    assert "vetoed" in runner.invoke(cli, ["rules", "veto", "0"]).stdout
    with Store(uno_home / "uno.db") as store:
        assert load_clusters(store)[0].vetoed is True
    assert "included again" in runner.invoke(cli, ["rules", "unveto", "0"]).stdout
    runner.invoke(cli, ["rules", "edit", "0", "--rule", "Sign off."])
    with Store(uno_home / "uno.db") as store:
        row = load_clusters(store)[0]
        assert (row.vetoed, row.effective_rules) == (False, ["Sign off."])
    missing = runner.invoke(cli, ["rules", "veto", "9"])
    assert missing.exit_code == 1 and "No cluster 9; `uno rules` lists them." in missing.stderr


def test_a_long_decision_wraps_between_words_on_a_terminal_and_stays_one_line_in_a_pipe(capsys):
    from uno_local.cli.learn_commands import _wrapping_echo

    decision = "    decision: epoch 9 won 0.67 of 3 held-out logs (needs 0.60); judged epoch 3 0.33, epoch 6 0.00 (loops)"
    _wrapping_echo(tty=True, columns=80)(decision, "      ")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "    decision: epoch 9 won 0.67 of 3 held-out logs (needs 0.60); judged epoch 3",
        "      0.33, epoch 6 0.00 (loops)",
    ]
    _wrapping_echo(tty=False)(decision, "      ")
    assert capsys.readouterr().out == decision + "\n"
