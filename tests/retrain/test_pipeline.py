"""`Retrain` end to end on the fakes (tests/retrain/conftest.py): the stage order, resuming after a
failure in each stage, veto, --recluster, online joining, edited rules, the lock
and the run records. A real store and a real registry; seconds in all."""

from __future__ import annotations

import json

import pytest

from tests.retrain.fakes import COOKING, SIGN_OFF, Failure, add_cooking, add_garden, add_log, base_answer
from uno_local.errors import NothingToLearnError, RetrainLockedError
from uno_local.retrain import (
    PIPELINE,
    STAGES,
    Retrain,
    RetrainOptions,
    describe_run,
    retrain_alive,
    retrain_lock,
)
from uno_local.retrain.validate import FRESH, FRESH_TOKENS, fresh_ids
from uno_local.store.learning import last_run, load_clusters, start_run, update_cluster
from uno_local.train import with_min_steps
from uno_local.validate import NEAR_QUESTIONS, terse_question


def retrain(app, fakes, events=None, **options):
    progress = events.append if events is not None else None
    return Retrain(app, RetrainOptions(**options), progress=progress, tools=fakes.tools()).run()


def routes(report) -> list[tuple[int, int, str]]:
    return (
        [(c["label"], c["size"], c["route"]) for c in report["clusters"] if "label" in c]
        if isinstance(report, dict)
        else [(c["label"], c["size"], c["route"]) for c in report.clusters]
    )


def runs(app) -> list[str]:
    return [row[0] for row in app.store.db.execute("SELECT status FROM retrain_runs ORDER BY id")]


def test_stages_run_in_the_documented_order(app, fakes):
    add_cooking(app)
    add_garden(app)
    events = []
    report = retrain(app, fakes, events)
    assert STAGES == tuple(name for name, _ in PIPELINE) == (
        "collect", "distill", "predict", "pair", "cluster", "gap", "train", "convert", "validate", "deploy"
    )  # fmt: skip
    first_seen = list(dict.fromkeys(e.stage for e in events))
    assert first_seen == list(STAGES)
    assert routes(report) == [(0, 10, "expert"), (1, 10, "expert")]
    assert report.deployed == ["expert-c0@v1", "expert-c1@v1"]
    served = {a.name: a for a in app.registry.active()}
    assert set(served) == {"expert-c0", "expert-c1"}
    assert runs(app) == ["finished"]


def broken_store(*args, **kwargs):
    raise Failure("the store could not be read")


# How to make each stage fail part-way through its work.
BREAK = {
    "collect": lambda app, fakes: setattr(app.store, "logs", broken_store),
    "distill": lambda app, fakes: setattr(fakes.runtime, "fail", "distill"),
    "predict": lambda app, fakes: setattr(fakes.runtime, "fail", "predict"),
    "pair": lambda app, fakes: setattr(fakes.runtime, "fail", "revise"),
    "cluster": lambda app, fakes: setattr(fakes.embedder, "fail_after", 0),
    "gap": lambda app, fakes: setattr(fakes.embedder, "fail_after", 1),
    "train": lambda app, fakes: setattr(fakes.trainer, "fail_on", 2),  # the second cluster's run
    "convert": lambda app, fakes: setattr(fakes, "export_fails", True),
    "validate": lambda app, fakes: setattr(fakes.runtime, "fail", "adapter"),
    "deploy": lambda app, fakes: setattr(fakes, "parity_fails", True),
}


@pytest.mark.parametrize("stage", STAGES)
def test_a_failed_stage_resumes_and_ends_as_a_clean_run(app, fakes, stage):
    cooking, garden = add_cooking(app), add_garden(app)
    BREAK[stage](app, fakes)
    with pytest.raises(Failure):
        retrain(app, fakes)
    assert runs(app) == ["failed"] and last_run(app.store).stage == stage  # it failed in that stage
    assert describe_run_text(app).startswith(f"failed during {stage}")
    assert not load_clusters(app.store) and not app.registry.active()  # nothing serves from a failed run
    fakes.heal()
    vars(app.store).pop("logs", None)
    trained_before = len(fakes.trainer.runs)
    report = retrain(app, fakes)
    assert routes(report) == [(0, 10, "expert"), (1, 10, "expert")]
    assert [(r.label, sorted(r.members)) for r in load_clusters(app.store)] == [(0, cooking), (1, garden)]
    done = STAGES.index(stage)
    if done > STAGES.index("distill"):
        assert report.cached["distill"] == 20  # what finished is not done again
    if done > STAGES.index("pair"):
        assert report.cached["pair"] == 20
    if stage == "train":
        assert report.cached["train"] == 1 and len(fakes.trainer.runs) == trained_before + 1
    if done > STAGES.index("train"):
        assert report.cached["train"] == 2 and len(fakes.trainer.runs) == trained_before
    assert runs(app) == ["failed", "finished"]


def describe_run_text(app) -> str:
    return describe_run(last_run(app.store), retrain_alive(app.home))


def test_nothing_new_to_learn(app, fakes):
    with pytest.raises(NothingToLearnError, match="no feedback"):
        retrain(app, fakes)
    add_cooking(app)
    retrain(app, fakes)
    with pytest.raises(NothingToLearnError, match="Nothing new"):
        retrain(app, fakes)
    assert runs(app)[-1] == "failed" and len(app.registry.active()) == 1


def test_too_few_similar_logs_to_form_a_cluster(app, fakes):
    add_cooking(app, ["boil an egg", "cook pasta", "roast a chicken"])
    add_garden(app, ["plant tomatoes", "water an orchid"])
    with pytest.raises(NothingToLearnError, match="a cluster needs 6 similar logs"):
        retrain(app, fakes)
    assert last_run(app.store).stage == "cluster" and not fakes.trainer.runs


def test_new_logs_join_their_cluster_online_and_only_it_retrains(app, fakes):
    add_cooking(app, COOKING_A := ["boil an egg", "cook pasta", "roast a chicken", "bake bread", "fry rice",
                                   "steam broccoli", "grill fish", "poach an egg"])  # fmt: skip
    add_garden(app)
    retrain(app, fakes)
    trained = len(fakes.trainer.runs)
    new = add_cooking(app, ["make soup", "toast bread"])
    add_log(app, "tune a guitar", comment="Answer as a numbered list.")  # far from both: waits
    report = retrain(app, fakes)
    rows = {r.label: r for r in load_clusters(app.store)}
    assert set(new) <= set(rows[0].members) and len(rows[0].members) == len(COOKING_A) + 2
    assert [c["reused"] for c in report.clusters] == [False, True]
    assert len(fakes.trainer.runs) == trained + 1  # only the cluster that grew trained again
    assert report.deployed == ["expert-c0@v2"]
    assert report.logs == 21 and sum(len(r.members) for r in rows.values()) == 20


def test_a_cluster_that_shipped_nothing_is_not_trained_again_on_the_same_data(app, fakes):
    """Training and judging are seeded and greedy: the garden cluster's unchanged logs would fail again,
    so when only the cooking cluster grows, garden keeps its decision without training or judging."""
    fakes.trainer.learns = False
    add_cooking(app, COOKING[:8])
    add_garden(app)
    first = {c["label"]: c for c in retrain(app, fakes).clusters}
    assert [c["route"] for c in first.values()] == ["base", "base"]
    trained = len(fakes.trainer.runs)
    add_cooking(app, ["make soup", "toast bread"])
    report = retrain(app, fakes)
    assert [c["reused"] for c in report.clusters] == [False, True]
    garden = report.clusters[1]
    assert garden["decision"] == first[garden["label"]]["decision"] and garden["route"] == "base"
    assert [o for o, _ in fakes.trainer.runs[trained:]] == ["preference", "sft"]  # cooking's alone


def test_veto_keeps_a_cluster_out_of_training(app, fakes):
    add_cooking(app)
    add_garden(app, ["plant tomatoes", "water an orchid", "prune roses", "grow basil", "repot a cactus",
                     "mulch a garden", "compost leaves", "sow carrots"])  # fmt: skip
    retrain(app, fakes)
    update_cluster(app.store, 0, vetoed=1)
    add_cooking(app, ["make an omelette"])
    add_garden(app, ["weed a lawn", "feed hydrangeas"])
    trained = len(fakes.trainer.runs)
    report = retrain(app, fakes)
    c0, c1 = report.clusters
    assert (c0["route"], c0["decision"], c0["expert"]) == ("base", "vetoed by you: not trained", None)
    assert c1["route"] == "expert" and report.deployed == ["expert-c1@v2"]
    assert len(fakes.trainer.runs) == trained + 1  # the garden cluster only
    assert load_clusters(app.store)[0].vetoed


def test_recluster_starts_afresh_under_new_labels(app, fakes):
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    update_cluster(app.store, 0, user_rules=["Be brief."])
    trained = len(fakes.trainer.runs)
    report = retrain(app, fakes, recluster=True)
    rows = load_clusters(app.store)
    assert [r.label for r in rows] == [2, 3]  # never an old label: an edit or veto can't land elsewhere
    assert all(r.user_rules is None for r in rows)
    assert [c["route"] for c in report.clusters] == ["expert", "expert"]
    # the garden cluster's data is unchanged: its adapters are reused; cooking lost the edit, so it
    # is back to its first data, and reuses them too
    assert all(c["reused"] for c in report.clusters) and len(fakes.trainer.runs) == trained


def test_an_edit_changes_what_is_trained_and_retrains_the_cluster(app, fakes):
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    garden_before = fakes.trainer.runs[-1][1]
    assert all(e.chosen.startswith("1. ") for e in garden_before)  # revisions followed "numbered list"
    assert not any("Happy gardening!" in e.chosen for e in garden_before)
    update_cluster(app.store, 1, user_rules=['End the answer with "Happy gardening!".'])
    report = retrain(app, fakes)
    objective, examples = fakes.trainer.runs[-1]
    assert objective == "preference" and len(fakes.trainer.runs) == 3  # only the edited cluster retrained
    assert all(e.chosen.endswith("Happy gardening!") for e in examples)  # the revisions follow the edit
    assert report.cached["pair"] == 10  # the cooking logs' pairs are reused; the garden ones were redone
    c1 = report.clusters[1]
    assert c1["rules"] == ['End the answer with "Happy gardening!".'] and c1["route"] == "expert"
    assert report.deployed == ["expert-c1@v2"]
    assert app.runtime.calls["revise"] == 2 * 10 * app.config.uno.revisions


def test_one_retrain_at_a_time(app, fakes):
    add_cooking(app)
    assert not retrain_alive(app.home)
    with retrain_lock(app.home):
        assert retrain_alive(app.home)
        with pytest.raises(RetrainLockedError, match="already running"):
            retrain(app, fakes)
    assert not retrain_alive(app.home)
    assert runs(app) == []  # a refused run leaves no record
    retrain(app, fakes)


def test_a_killed_run_reads_as_interrupted(app, fakes):
    add_cooking(app)
    start_run(app.store)  # a run whose process died: its record says running, nobody holds the lock
    assert describe_run_text(app).startswith("interrupted during collect")
    with retrain_lock(app.home):
        assert describe_run_text(app).startswith("running since")
    retrain(app, fakes)
    assert runs(app) == ["interrupted", "finished"]
    summary = json.loads(app.store.db.execute("SELECT summary FROM retrain_runs WHERE id = 2").fetchone()[0])
    assert summary["deployed"] == ["expert-c0@v1"]
    assert describe_run_text(app).endswith("10 logs, 1 clusters, 1 adapters deployed")


# The fake writes one new question per list, on the last listed question's topic: the lists start
# evenly over a cluster's 10 questions and wrap round, so its NEAR_QUESTIONS lists give at most 10.
NEAR_ASKED = min(NEAR_QUESTIONS, 10)


def answer_batches(fakes) -> set[tuple[int, ...]]:
    """(requests, max_tokens) of every batch of free-text answers the fake runtime was asked for."""
    return {
        (len(b), *m)
        for b, m in zip(fakes.runtime.batches, fakes.runtime.budgets, strict=True)
        if b[0] == "answer"
    }


def test_generation_is_batched_across_logs_and_cached_logs_generate_nothing(app, fakes):
    app.config.uno.practice_questions = 0  # the validator's batches alone: practice's are tested below
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    by_kind = {}
    for batch in fakes.runtime.batches:
        for kind in set(batch):
            by_kind[kind] = max(by_kind.get(kind, 0), batch.count(kind))
    # the ten commented logs' distill calls in one batch (a correction's rules need no model), all
    # twenty logs' predictions in one, the garden logs' revisions in one, a cluster's 3 held-out answers
    # in one, the shipping epoch's answers to 8 of the other cluster's questions in one (the loop
    # check's), and the base's answers to those 8 in one, both shorter than the chat's; the new
    # questions like a cluster's written in one, and the shipping epoch's answers to them in one
    # (practice, off here, would add the base's answers for an Expert to practise on: see below)
    assert by_kind["distill"] == 10 and by_kind["predict"] == 20 and by_kind["continue"] == NEAR_QUESTIONS
    answers = answer_batches(fakes)
    chat, fresh = app.config.generation.max_tokens, min(app.config.generation.max_tokens, FRESH_TOKENS)
    assert fresh < chat and answers == {(3, chat), (FRESH, fresh), (NEAR_ASKED, chat)}, answers
    assert by_kind["revise"] == 10 * app.config.uno.revisions
    assert all(len(set(batch)) == 1 for batch in fakes.runtime.batches)  # one kind of call per batch
    before = len(fakes.runtime.batches)
    with pytest.raises(NothingToLearnError):
        retrain(app, fakes)
    assert len(fakes.runtime.batches) == before  # all cached: nothing generated


def test_near_questions_that_routing_would_send_elsewhere_are_not_asked(app, fakes):
    """The base model's new questions count only where the cluster's Expert would answer them: one off
    the topic (routed to the base model) is dropped, and with none left no epoch answers any."""
    app.config.uno.practice_questions = 0  # the validator's batches alone: practice's are tested below
    fakes.runtime.writes = " What is the capital of France?"
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    sizes = answer_batches(fakes)
    chat, fresh = app.config.generation.max_tokens, min(app.config.generation.max_tokens, FRESH_TOKENS)
    assert sizes == {(3, chat), (FRESH, fresh)}, sizes  # held-out and other questions only


def test_an_expert_practises_its_clusters_edit_on_new_questions(app, fakes):
    """Every cooking correction appends the sign-off: the Expert also trains on the base model's answers
    to new questions like the cluster's, each with the sign-off appended; the validator asks none of
    them. The garden logs have comments, not corrections: nothing to copy, no practice."""
    app.config.train.min_steps = 12  # a small cluster's epochs count its logs' examples only
    add_cooking(app)
    add_garden(app)
    report = retrain(app, fakes)
    cooking, garden = report.clusters
    (expert_run, (_, garden_examples)) = fakes.trainer.runs
    practice = [e for e in expert_run[1] if not e.prompt[-1]["content"].startswith("How do I ")]
    assert [e.prompt[-1]["content"] for e in practice] == cooking["practice"]
    own = len(expert_run[1]) - len(practice)
    assert fakes.trainer.epochs[0] == with_min_steps(app.config.train, own).epochs  # practice adds steps
    assert fakes.trainer.epochs[0] > with_min_steps(app.config.train, len(expert_run[1])).epochs
    questions = [e.prompt[-1]["content"] for e in practice]
    near = [q for q in questions if q.startswith("Why do people talk about ")]
    assert len(near) >= 3  # the fake continues each list with a question on its last one's topic
    # and a third as many of its training questions as a user types them in a hurry ("Steam broccoli?")
    trained = {terse_question(q): q for q in (f"How do I {c}?" for c in COOKING)}
    terse = [q for q in questions if q not in near]
    assert len(terse) == 12 // 3 and all(q in trained for q in terse), terse
    for e in practice:
        question = e.prompt[-1]["content"]
        assert (e.chosen, e.rejected) == (f"{base_answer(question)}\n{SIGN_OFF}", base_answer(question))
    assert "practised on" in cooking["decision"] and "adds 'Happy cooking!' at the end" in cooking["decision"]
    assert not garden["practice"] and all(
        e.prompt[-1]["content"].startswith("How do I ") for e in garden_examples
    )
    asked = [(q, adapter) for q, adapter in fakes.runtime.asked if q in cooking["practice"]]
    assert sorted(asked) == sorted((q, None) for q in cooking["practice"])  # by the base model, once


def add_answer(app, query: str, answer: str, **feedback) -> None:
    store = app.store
    cid = store.new_conversation()
    store.add_message(cid, "user", query)
    answer_id = store.start_answer(cid, model="fake.gguf")
    store.finish_answer(answer_id, answer)
    store.set_feedback(answer_id, **feedback)


@pytest.mark.parametrize("liked_lists", [0, 3])
def test_a_list_edit_is_practised_unless_liked_lists_teach_the_form(app, fakes, liked_lists):
    """Corrections that put an answer's words in a bulleted list: practised on new questions, except
    where the user liked answers that already are such lists (those teach the form, and corrections of
    form only then train nothing: `train.expert_examples`); then no question is even written."""

    def as_bullets(answer: str) -> str:
        return "- " + answer.replace(" and ", "\n- and ")

    for q in COOKING:
        query = f"How do I {q}?"
        add_answer(app, query, base_answer(query), correction=as_bullets(base_answer(query)))
    for q in COOKING[:liked_lists]:
        query = f"Should I {q} today?"
        add_answer(app, query, "- Yes, today.\n- Early is best.\n- Check as you go.", rating=1)
    (cluster,) = retrain(app, fakes).clusters
    if liked_lists:
        written = [len(b) for b in fakes.runtime.batches if b and b[0] == "continue"]
        assert not cluster["practice"] and app.config.uno.practice_questions not in written
    else:
        assert (
            len(cluster["practice"]) >= 3 and "puts its sentences in a bulleted list" in cluster["decision"]
        )
        (_, examples), *_ = fakes.trainer.runs
        practised = [e for e in examples if e.prompt[-1]["content"] in cluster["practice"]]
        assert all(e.chosen == "- " + e.rejected for e in practised) and practised


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ('{"rules": ["Be brief."]}', '{"rules": ["Be brief."]}'),
        ('{"rules": ["' + "x" * 200 + '"]}', '{"rules": ["' + "x" * 90),
        ("", ""),
    ],
)
def test_a_runaway_rule_is_cut_where_a_stream_would_have_stopped(text, cut):
    from uno_local.retrain.context import cut_runaway_string

    assert cut_runaway_string(text) == cut


def test_noisy_feedback_in_a_topic_is_kept_out_of_its_training_and_validation(app, fakes):
    """Two cooking logs whose comments ask for something else entirely join the cooking cluster (their
    questions are about cooking) but train nothing, are not held out, and are not the Expert's sources."""
    app.config.uno.rule_consistency = 0.5  # the calibrated cut (docs/thresholds.md); off by default
    cooking = add_cooking(app)
    noisy = [
        add_log(app, "braise leeks for cooking", comment="Write everything in German from now on."),
        add_log(app, "fry an egg for cooking", comment="Use more emojis everywhere please."),
    ]
    add_garden(app)
    events = []
    report = retrain(app, fakes, events)
    cluster = next(
        c for c in report.clusters if set(cooking) <= set(load_clusters(app.store)[c["label"]].members)
    )
    assert cluster["kept_out"] == sorted(noisy) and cluster["size"] == 12
    assert f'End the answer with "{SIGN_OFF}".' in cluster["rules"]
    assert not any("German" in r or "emojis" in r for r in cluster["rules"])
    expert = next(a for a in app.registry.active() if a.name == cluster["expert"].split("@")[0])
    assert not set(noisy) & set(expert.sources) and set(expert.sources) < set(cooking)
    assert any("2 logs kept out" in e.message for e in events if e.stage == "cluster")


def test_rule_consistency_off_by_default_keeps_every_log(app, fakes):
    assert app.config.uno.rule_consistency == 0.0
    add_cooking(app)
    add_log(app, "braise leeks for cooking", comment="Write everything in German from now on.")
    add_garden(app)
    report = retrain(app, fakes)
    assert all(c["kept_out"] == [] for c in report.clusters)


def test_the_report_keeps_a_few_heldout_questions_answered_before_and_after(app, fakes):
    add_cooking(app)
    report = retrain(app, fakes)
    (cluster,) = report.clusters
    examples = cluster["examples"]
    assert 1 <= len(examples) <= 3
    for example in examples:
        assert example["query"].startswith("How do I ")
        assert not example["before"].endswith(SIGN_OFF)  # the base model
        assert example["after"].endswith(SIGN_OFF)  # the Expert learned the sign-off
    assert last_run(app.store).summary["clusters"][0]["examples"] == examples


def test_a_closing_habit_after_a_cut_off_answer_is_trained_within_the_answer_budget(app, fakes):
    """Logs whose answers the token limit cut off, corrected by appending a sign-off: the Expert learns
    complete sentences then the sign-off, ending inside half the chat's limit (the fake counts words)."""
    app.config.generation.max_tokens = 16  # the logged answers reached it; a budget of 8 words
    long_answer = (
        "First, gather the tools. Then work slowly and carefully. Check every joint twice before you"
    )
    store = app.store
    for q in COOKING:
        cid = store.new_conversation()
        store.add_message(cid, "user", f"How do I {q}?")
        answer_id = store.start_answer(cid, model="fake.gguf")
        store.finish_answer(answer_id, long_answer)
        store.set_feedback(answer_id, correction=f"{long_answer}\n\n{SIGN_OFF}")
    retrain(app, fakes)
    objective, examples = fakes.trainer.runs[0]
    assert objective == "preference"
    examples = [e for e in examples if e.prompt[-1]["content"].startswith("How do I ")]  # not practice
    body = "First, gather the tools."
    assert {(e.chosen, e.rejected) for e in examples} == {(f"{body}\n\n{SIGN_OFF}", body)}
    assert all(e.fitted and e.extends_rejected for e in examples)  # its end-of-turn is not pushed down


def test_logs_with_nothing_to_judge_by_are_never_held_out(app, fakes):
    """A bare "meh" has no rule and no correction: a held-out answer to it could only tie, so it trains
    (with no pair: nothing) and the cluster's held-out logs are all ones the validator can judge."""
    cooking = add_cooking(app)
    meh = [
        add_log(app, q, comment="meh") for q in ("boil rice", "bake a cake", "fry potatoes", "roast leeks")
    ]
    report = retrain(app, fakes)
    (cluster,) = report.clusters
    assert set(meh) <= set(load_clusters(app.store)[cluster["label"]].members)
    expert = next(a for a in app.registry.active() if a.name == cluster["expert"].split("@")[0])
    heldout = set(cooking) - set(expert.sources)
    assert len(heldout) == cluster["heldout"] == 3 and set(meh) <= set(expert.sources)


def test_a_cluster_with_too_few_logs_to_validate_on_is_not_trained(app, fakes):
    """Plain thumbs-up (nothing to judge a held-out answer by) and two corrections: no adapter could
    ever pass validation, so none is trained, and the report says why."""
    ids = [add_log(app, q) for q in COOKING[2:]]
    for mid in ids:
        app.store.set_feedback(mid, rating=1)
    add_cooking(app, COOKING[:2])
    report = retrain(app, fakes)
    (c0,) = report.clusters
    assert (c0["size"], c0["route"], c0["expert"], c0["critic"]) == (len(COOKING), "base", None, None)
    assert fakes.trainer.runs == [] and report.deployed == []
    assert "not trained: only 0 of its logs can be held out" in c0["decision"]


def test_fresh_questions_come_from_outside_the_cluster_evenly():
    from uno_local.retrain.state import ClusterPlan, RetrainState
    from uno_local.store.learning import ClusterRow

    state = RetrainState()
    state.items = {i: None for i in range(1, 31)}
    plan = ClusterPlan(ClusterRow(label=0, centroid=[], members=list(range(1, 11)), rules=[]))
    assert fresh_ids(state, plan, 4) == [11, 16, 21, 26]
    assert fresh_ids(state, plan, 40) == list(range(11, 31))  # fewer than asked: all of them
    everyone = ClusterPlan(ClusterRow(label=0, centroid=[], members=list(range(1, 31)), rules=[]))
    assert fresh_ids(state, everyone, 4) == []


def test_at_a_chat_budget_within_the_loop_checks_the_base_answers_held_out_logs_once(app, fakes):
    """With answers no longer than the loop check's (the e2e settings), its base answers and the
    held-out baselines are the same answers: the 3 made for validation are not made again."""
    app.config.uno.practice_questions = 0  # the validator's batches alone: practice's are tested below
    app.config.generation.max_tokens = FRESH_TOKENS
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    answers = answer_batches(fakes)
    assert answers == {
        (3, FRESH_TOKENS),
        (FRESH - 3, FRESH_TOKENS),
        (FRESH, FRESH_TOKENS),
        (NEAR_ASKED, FRESH_TOKENS),
    }, answers


def test_every_free_text_answer_is_decoded_with_the_chats_dry_penalty(app, fakes):
    """The retrain judges the answers a user would get: held-out, loop-check and revision answers carry
    uno.toml's DRY penalty; the grammar-bound JSON of distill and predict never does, nor the list of
    the user's questions the base model continues with new ones (validate's near questions)."""
    app.config.generation.dry_multiplier = 0.8
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    kinds = dict(fakes.runtime.decoding)
    assert {"answer", "revise", "distill"} <= set(kinds), kinds
    assert fakes.runtime.decoding == {
        (k, 0.0 if k in ("distill", "predict", "continue") else 0.8) for k in kinds
    }


def test_turning_the_dry_penalty_on_makes_the_revisions_again_and_only_them(app, fakes):
    """Cached revisions were decoded without the penalty: turned on, they are made again (distill's JSON,
    which never gets it, is reused); off, the caches of retrains before the setting existed stay valid."""
    add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    assert retrain(app, fakes, recluster=True).cached["pair"] == 20
    app.config.generation.dry_multiplier = 0.8
    report = retrain(app, fakes, recluster=True)
    assert (report.cached.get("pair", 0), report.cached["distill"]) == (0, 20)
    assert retrain(app, fakes, recluster=True).cached["pair"] == 20
