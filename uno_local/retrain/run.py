"""The `Retrain` job: runs the stages in order under the retrain lock, caches per-log artifacts,
reports progress through a callback and records each run (and its failure) in the store."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable

from uno_local.errors import TrainingError
from uno_local.retrain.learn import LearnStages
from uno_local.retrain.plan import (
    STAGES,
    ClusterPlan,
    Progress,
    RetrainOptions,
    RetrainReport,
    StageEvent,
    choose_backend,
    retrain_lock,
)
from uno_local.retrain.ship import ShipStages
from uno_local.store import Log, now_iso
from uno_local.store.learning import get_artifact, input_hash, put_artifact
from uno_local.train import LogData


class Retrain(LearnStages, ShipStages):
    def __init__(
        self,
        app,
        options: RetrainOptions | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.app = app
        self.store = app.store
        self.cfg = app.config.uno
        self.options = options or RetrainOptions()
        self.backend = choose_backend(
            self.options.backend if self.options.backend != "auto" else app.config.train.backend
        )
        self.progress = progress or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.model_name = app.model_path.name
        # Held-out answers and revisions as long as the chat allows: a closing line must fit, as for users.
        self.answer_tokens = app.config.generation.max_tokens
        self.cached: Counter = Counter()
        self.logs: list[Log] = []
        self.items: dict[int, LogData] = {}
        self.plans: list[ClusterPlan] = []
        self.deployed: list[str] = []
        self.gap_skipped_tokens = 0
        self._trainer = None
        self.parity_checker = None  # the deploy stage's, loaded with its first adapter

    # helpers
    def _emit(self, stage: str, done: int, total: int, message: str = "") -> None:
        self.progress(StageEvent(stage, done, total, message))
        if self.should_stop():
            raise TrainingError(
                f"Retrain stopped during {stage}; what is deployed keeps serving. Run it again to resume."
            )

    def _cached(
        self, stage: str, key: str, parts: tuple, compute: Callable[[], object], provenance: dict
    ) -> object:
        h = input_hash(stage, self.model_name, *parts)
        found = get_artifact(self.store, stage, key, h)
        if found is not None:
            self.cached[stage] += 1
            return found
        data = compute()
        put_artifact(self.store, stage, key, h, data, {"model": self.model_name, **provenance})
        return data

    @property
    def trainer(self):
        if self._trainer is None:
            from backends import get_trainer

            self._trainer = get_trainer(self.backend, self.app.model_path, self.app.cache_dir)
        return self._trainer

    # the stages
    def run(self) -> RetrainReport:
        start = time.perf_counter()
        timings: dict[str, float] = {}
        with retrain_lock(self.app.home):
            run_id = self._record_run(None, "running")
            try:
                for stage in STAGES:
                    self._record_run(run_id, "running", stage)
                    t0 = time.perf_counter()
                    getattr(self, f"stage_{stage}")()
                    timings[stage] = round(time.perf_counter() - t0, 2)
            except BaseException as exc:
                self._record_run(run_id, "failed", summary={"error": str(exc)})
                raise
            report = self._report(time.perf_counter() - start, timings)
            self._record_run(run_id, "finished", summary=report.as_dict())
        return report

    def _record_run(
        self, run_id: int | None, status: str, stage: str | None = None, summary: dict | None = None
    ):
        db = self.store.db
        with self.store.transaction():
            if run_id is None:
                return db.execute(
                    "INSERT INTO retrain_runs (started_at, status) VALUES (?, ?)", [now_iso(), status]
                ).lastrowid
            fields = {"status": status}
            if stage:
                fields["stage"] = stage
            if summary is not None:
                fields["summary"] = json.dumps(summary, default=str)
                fields["finished_at"] = now_iso()
            db.execute(
                f"UPDATE retrain_runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                [*fields.values(), run_id],
            )
        return run_id

    def _report(self, seconds: float, timings: dict[str, float]) -> RetrainReport:
        clusters = [
            {
                "label": p.row.label,
                "size": len(p.row.members),
                "heldout": len(p.heldout_ids),
                "gap": p.row.gap,
                "intrinsic_gap": p.row.intrinsic_gap,
                "high_gap": p.row.high_gap,
                "route": p.row.route,
                "expert": p.row.expert,
                "critic": p.row.critic,
                "win_rate": p.row.win_rate,
                "decision": p.row.decision,
                "reused": p.reused,
                "rules": p.row.effective_rules,
            }
            for p in self.plans
        ]
        return RetrainReport(
            logs=len(self.logs),
            pairs=sum(1 for i in self.items.values() if i.pair),
            clusters=clusters,
            deployed=self.deployed,
            seconds=round(seconds, 1),
            stage_seconds=timings,
            cached=dict(self.cached),
            trained_tokens=sum(p.train_tokens for p in self.plans),
            gap_skipped_tokens=self.gap_skipped_tokens,
            backend=self.backend,
        )
