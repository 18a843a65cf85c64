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


def test_a_win_rate_is_marked_not_shipped_where_the_cluster_answers_with_the_base(uno_home):
    """tech-support's password cluster: its Expert won 0.67 of 3 held-out logs but followed the rules in 1
    of 3 and was refused; "route base, win rate 0.67" read as if the base model had won."""
    uno_home.mkdir(parents=True, exist_ok=True)
    refused = ClusterRow(label=0, centroid=[0.1], members=[1, 2], rules=["Add a Tip: line."], win_rate=0.67)
    shipped = ClusterRow(
        label=1,
        centroid=[0.2],
        members=[3],
        rules=["Bullets."],
        route="expert",
        expert="expert-c1",
        win_rate=0.83,
    )
    unjudged = ClusterRow(label=2, centroid=[0.3], members=[4], rules=["Be brief."])
    with Store(uno_home / "uno.db") as store:
        replace_clusters(store, [refused, shipped, unjudged])
    out = CliRunner().invoke(cli, ["rules"]).stdout
    assert "cluster 0: 2 logs, gap -, route base, win rate 0.67 (not shipped), expert -" in out
    assert "cluster 1: 1 logs, gap -, route expert, win rate 0.83, expert expert-c1" in out
    assert "cluster 2: 1 logs, gap -, route base, win rate -, expert -" in out
