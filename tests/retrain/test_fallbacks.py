"""Where a cluster goes when its Expert cannot serve it, on the fakes (tests/retrain/conftest.py): a high
gap's Critic, a failed Expert's Critic, no Critic where the base model cannot revise, and a high gap's
Expert where the Reflective path cannot serve it."""

from __future__ import annotations

import pytest

from tests.retrain.fakes import GARDEN, add_cooking, add_garden
from tests.retrain.test_pipeline import retrain
from uno_local.store.learning import load_clusters, update_cluster


def test_high_gap_trains_a_critic_on_the_edited_rules(app, fakes):
    app.config.uno.gap_threshold = 0.0  # every cluster is high-gap
    add_cooking(app)
    add_garden(app)
    report = retrain(app, fakes)
    assert [(c["route"], c["critic"]) for c in report.clusters] == [
        ("reflective", "critic-c0"),
        ("reflective", "critic-c1"),
    ]
    assert [objective for objective, _ in fakes.trainer.runs] == ["sft", "sft"]
    assert {e.chosen for e in fakes.trainer.runs[-1][1]} == {"1. Answer as a numbered list."}
    assert report.gap_skipped_tokens > 0
    # every training run, the Critics' after the base model's revisions too, trains with the chat
    # model's memory freed; it is loaded again to judge them
    assert fakes.trainer.beside_the_chat_model == [False, False]
    assert fakes.parity_beside_the_chat_model == [False]  # one deploy gate, with that model freed too
    assert app.runtime.calls["release"] == 3
    assert all("the Reflective path won 1.00" in c["decision"] for c in report.clusters)
    update_cluster(app.store, 1, user_rules=['End the answer with "Happy gardening!"', "Say when to water."])
    report = retrain(app, fakes)
    assert len(fakes.trainer.runs) == 3 and report.deployed == ["critic-c1@v2"]
    assert {e.chosen for e in fakes.trainer.runs[-1][1]} == {
        '1. End the answer with "Happy gardening!"\n2. Say when to water.'
    }


def test_an_expert_that_fails_validation_falls_back_to_a_critic(app, fakes, monkeypatch):
    """The Expert learns nothing (ties with the base: win rate 0.5), so a Critic is trained, and its
    Reflective path, which does learn the sign-off, beats the base on the held-out logs."""
    real_train = fakes.trainer.train

    def expert_learns_nothing(examples, config, out_dir, *, objective="preference", **kw):
        fakes.trainer.learns = objective == "sft"
        return real_train(examples, config, out_dir, objective=objective, **kw)

    monkeypatch.setattr(fakes.trainer, "train", expert_learns_nothing)
    add_cooking(app)
    report = retrain(app, fakes)
    (c0,) = report.clusters
    assert (c0["route"], c0["expert"], c0["critic"], c0["win_rate"]) == ("reflective", None, "critic-c0", 0.5)
    assert [objective for objective, _ in fakes.trainer.runs] == ["preference", "sft"]
    assert report.deployed == ["critic-c0@v1"]
    assert "the Reflective path won 1.00" in c0["decision"]


def test_an_expert_that_loops_on_the_users_other_questions_does_not_ship(app, fakes):
    """Its held-out answers win, but it answers questions from outside its cluster, which it never
    trained on, with a loop: no epoch ships, and `uno rules` says why."""
    add_cooking(app)
    add_garden(app)
    fakes.runtime.loops_on = tuple(GARDEN)
    report = retrain(app, fakes)
    cooking = next(c for c in report.clusters if "Happy cooking!" in " ".join(c["rules"]))
    assert cooking["expert"] is None, cooking
    assert "answers to questions it never trained on" in cooking["decision"], cooking["decision"]
    assert "loop (the base model's: 0)" in cooking["decision"], cooking["decision"]


def test_a_reflective_path_that_does_not_beat_the_base_is_not_chosen(app, fakes):
    """Neither the Expert nor the Critic learns anything: the Reflective path's revisions add nothing
    (its draft stands, a tie with the base), so the cluster stays on the base and `uno rules` says why."""
    fakes.trainer.learns = False
    add_cooking(app)
    report = retrain(app, fakes)
    (c0,) = report.clusters
    assert (c0["route"], c0["expert"], c0["critic"]) == ("base", None, None)
    assert report.deployed == [] and [o for o, _ in fakes.trainer.runs] == ["preference", "sft"]
    assert "the Reflective path was not chosen (won only 0.50 of" in c0["decision"]
    assert "the base model could not revise these answers well enough" in c0["decision"]
    assert load_clusters(app.store)[0].decision == c0["decision"]


@pytest.mark.parametrize("high_gap", [False, True], ids=["failed-expert", "high-gap"])
def test_no_critic_is_trained_where_the_base_model_cannot_revise(app, fakes, high_gap):
    """The base model's revisions under each held-out log's own rules (what a Critic trained on them
    could at best suggest) change nothing, a tie with the base: no Critic can make the Reflective path
    win, so none is trained (a minute saved per cluster on a real machine) and `uno rules` says why."""
    fakes.trainer.learns = False
    app.runtime.revises = False
    if high_gap:
        app.config.uno.gap_threshold = 0.0
    add_cooking(app)
    report = retrain(app, fakes)
    (c0,) = report.clusters
    assert (c0["route"], c0["expert"], c0["critic"]) == ("base", None, None)
    assert [o for o, _ in fakes.trainer.runs] == ["preference"]  # high gap: the Expert is its fallback
    assert "no Critic trained: even under your own rules, the base model's revisions" in c0["decision"]
    assert "won only 0.50 of" in c0["decision"]
    assert ("an Expert was trained instead: epoch" in c0["decision"]) is high_gap
    assert c0["decision"].endswith("they stay on the base model")
    assert load_clusters(app.store)[0].decision == c0["decision"]
    assert report.deployed == []


def test_a_high_gap_the_reflective_path_cannot_serve_gets_an_expert(app, fakes):
    """A high gap sends a cluster to the Reflective path; where the base model cannot revise its answers
    no Critic can help, so an Expert is trained after all and ships when it wins as any Expert must
    (measured: tech-support's Wi-Fi sign-off, a 0.97 gap, stayed on the base model at 0%)."""
    app.runtime.revises = False
    app.config.uno.gap_threshold = 0.0
    add_cooking(app)
    report = retrain(app, fakes)
    (c0,) = report.clusters
    assert (c0["route"], c0["expert"], c0["critic"]) == ("expert", "expert-c0", None)
    assert [o for o, _ in fakes.trainer.runs] == ["preference"] and report.deployed == ["expert-c0@v1"]
    assert c0["decision"].startswith("high gap; no Critic trained")
    assert "could not help; an Expert was trained instead: epoch 1 won 1.00" in c0["decision"]
    assert "stay on the base" not in c0["decision"]
    assert report.gap_skipped_tokens == 0  # nothing was skipped: the Expert trained


def test_a_high_gap_whose_reflective_path_is_not_chosen_gets_an_expert(app, fakes, monkeypatch):
    """The Critic is trained (the base model can revise) but its Reflective path does not beat the base
    on the held-out logs: an Expert is trained in the validate stage and judged as any other."""
    real_train = fakes.trainer.train

    def critic_learns_nothing(examples, config, out_dir, *, objective="preference", **kw):
        fakes.trainer.learns = objective == "preference"
        return real_train(examples, config, out_dir, objective=objective, **kw)

    monkeypatch.setattr(fakes.trainer, "train", critic_learns_nothing)
    app.config.uno.gap_threshold = 0.0
    add_cooking(app)
    report = retrain(app, fakes)
    (c0,) = report.clusters
    assert [o for o, _ in fakes.trainer.runs] == ["sft", "preference"]
    assert (c0["route"], c0["expert"], c0["critic"]) == ("expert", "expert-c0", None)
    assert "the Reflective path was not chosen" in c0["decision"]
    assert "well enough; an Expert was trained instead: epoch 1 won 1.00" in c0["decision"]
