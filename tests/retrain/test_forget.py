"""Forgetting: deleted feedback is gone from what serves after the next retrain.

Each case deletes feedback through `Store.delete_feedback` (the call the Feedback view's `x` makes),
retrains on the fakes, then checks every serving adapter (`Registry.active()`: what the chat loads;
the fake "GGUF" files fail `serving()`'s magic check) and every version a rollback could bring back,
through its recorded training logs: the registry's
`sources` column, the `sources` in its manifest.json, and the examples its trainer saw."""

from __future__ import annotations

import json

import pytest

from tests.retrain.fakes import COOKING, add_cooking, add_garden
from tests.retrain.test_pipeline import retrain
from uno_local.errors import NothingToLearnError
from uno_local.registry import AdapterRecord


def trained_on(record: AdapterRecord) -> tuple[set[int], set[int], str]:
    """What `record` says it learned from: registry sources, manifest sources, the trainer's examples."""
    manifest = json.loads((record.path / "manifest.json").read_text())
    examples = (record.path / "peft" / "examples.json").read_text()  # the fake trainer's record
    return set(record.sources), set(manifest["sources"]), examples


def assert_forgotten(app, answer_id: int, query: str) -> None:
    """No serving adapter (and no version a rollback could bring back) was trained on `answer_id`."""
    for record in app.registry.list():
        if record.status == "retired":
            continue
        sources, manifest_sources, examples = trained_on(record)
        assert answer_id not in sources and answer_id not in manifest_sources, record.key
        assert query.lower() not in examples.lower(), record.key


def cooking_sources(app) -> list[int]:
    (expert,) = [r for r in app.registry.active() if r.name == "expert-c0"]
    return expert.sources


def test_forgetting_one_answer_retrains_its_cluster_without_it(app, fakes):
    cooking = add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    forgotten = cooking_sources(app)[0]
    query = COOKING[cooking.index(forgotten)]
    assert query in trained_on(app.registry.deployed("expert-c0"))[2]  # it was learned from

    app.store.delete_feedback(forgotten)
    report = retrain(app, fakes)

    assert report.deployed == ["expert-c0@v2"]  # only the cluster that used it retrained
    assert report.retired == ["expert-c0@v1"]  # now "previous" no more: a rollback cannot revive it
    assert [c["reused"] for c in report.clusters] == [False, True]
    assert {r.key for r in app.registry.active()} == {"expert-c0@v2", "expert-c1@v1"}
    assert_forgotten(app, forgotten, query)
    assert app.registry.rollback("expert-c0") is None  # v1 learned from it: a rollback goes to the base


def test_forgetting_a_whole_cluster_retires_its_adapter(app, fakes):
    cooking = add_cooking(app)
    add_garden(app)
    retrain(app, fakes)
    for answer_id in cooking:
        app.store.delete_feedback(answer_id)

    with pytest.raises(NothingToLearnError, match="no longer serve"):
        retrain(app, fakes)  # the garden cluster is unchanged: nothing new to train

    assert [r.key for r in app.registry.active()] == ["expert-c1@v1"]
    for answer_id, query in zip(cooking, COOKING, strict=True):
        assert_forgotten(app, answer_id, query)


def test_forgetting_every_answer_leaves_only_the_base_model(app, fakes):
    cooking = add_cooking(app)
    retrain(app, fakes)
    for answer_id in cooking:
        app.store.delete_feedback(answer_id)

    with pytest.raises(NothingToLearnError, match="no longer serve"):
        retrain(app, fakes)

    assert app.registry.active() == []
