"""Resume bookkeeping: content-addressed artifacts, the cluster table, cached training folders."""

from __future__ import annotations

import json

import pytest

from uno_local.errors import TrainingError
from uno_local.store import Store
from uno_local.store.learning import (
    ClusterRow,
    artifacts,
    get_artifact,
    input_hash,
    load_clusters,
    put_artifact,
    replace_clusters,
    update_cluster,
)
from uno_local.train import train_cached
from uno_local.training import TrainResult


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "uno.db") as s:
        yield s


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ((1, "x"), (1, "x"), True),
        ((1, "x"), (1, "y"), False),
        (({"b": 1, "a": 2},), ({"a": 2, "b": 1},), True),
    ],
)
def test_input_hash(a, b, same):
    assert (input_hash(*a) == input_hash(*b)) is same


def test_artifacts_are_reused_only_for_the_same_inputs(store):
    h = input_hash("distill", "answer", "comment")
    put_artifact(store, "distill", "7", h, {"rules": ["Be brief."]}, {"model": "m.gguf"})
    assert get_artifact(store, "distill", "7", h) == {"rules": ["Be brief."]}
    assert get_artifact(store, "distill", "7", input_hash("distill", "answer", "other comment")) is None
    assert get_artifact(store, "predict", "7", h) is None
    provenance = store.db.execute("SELECT provenance FROM artifacts").fetchone()[0]
    assert json.loads(provenance) == {"model": "m.gguf"}
    put_artifact(store, "distill", "7", "new", {"rules": []}, {})
    assert artifacts(store, "distill") == {"7": {"rules": []}}


def test_cluster_table_is_replaced_whole(store):
    rows = [
        ClusterRow(label=0, centroid=[0.1, 0.2], members=[1, 2], rules=["Be brief."], gap=0.3, radius=0.55),
        ClusterRow(label=1, centroid=[0.3, 0.4], members=[3], rules=[], vetoed=True),
    ]
    replace_clusters(store, rows)
    loaded = load_clusters(store)
    assert [(r.label, r.members, r.vetoed, r.gap, r.radius) for r in loaded] == [
        (0, [1, 2], False, 0.3, 0.55),
        (1, [3], True, None, None),
    ]
    update_cluster(store, 0, user_rules=["Sign off."])
    assert load_clusters(store)[0].effective_rules == ["Sign off."]
    replace_clusters(store, rows[:1])
    assert [r.label for r in load_clusters(store)] == [0]


class CountingTrainer:
    """A trainer that writes one checkpoint folder per epoch and counts its runs."""

    def __init__(self, stop: bool = False) -> None:
        self.runs, self.stop = 0, stop

    def train(self, examples, config, out_dir, *, objective, on_progress, should_stop):
        self.runs += 1
        (out_dir / "epoch-1").mkdir(parents=True)
        return TrainResult([out_dir / "epoch-1"], {"seconds": 1.0, "losses": [0.5]}, stopped=self.stop)


def test_finished_training_is_reused_and_a_stopped_one_is_not(tmp_path):
    from uno_local.config import TrainConfig

    trainer = CountingTrainer()
    folder = tmp_path / "expert-abc"
    ckpts, metrics = train_cached(trainer, [object()] * 4, TrainConfig(), folder, "preference", None, None)
    again, metrics2 = train_cached(trainer, [object()] * 4, TrainConfig(), folder, "preference", None, None)
    assert trainer.runs == 1 and again == ckpts and metrics2["reused"] is True
    stopped = CountingTrainer(stop=True)
    with pytest.raises(TrainingError, match="stopped"):
        train_cached(stopped, [object()] * 4, TrainConfig(), tmp_path / "other", "preference", None, None)
    assert not (tmp_path / "other" / "done.json").exists()
