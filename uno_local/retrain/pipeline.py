"""The UNO loop as one list of stages, and `Retrain`, which runs them in order under the retrain lock,
records the run in the store and reports progress through a callback.

Each stage is a module named for its verb with a `run(ctx, state) -> state` function; a rerun after a
crash continues from what finished (per-log results are cached artifacts, training folders are named
by their inputs' hash), and nothing that serves changes before the deploy stage (or a run's end with
nothing to learn, which still retires the adapters trained on feedback deleted since).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from uno_local.errors import NothingToLearnError
from uno_local.retrain import cluster, collect, convert, deploy, distill, gap, pair, predict, train, validate
from uno_local.retrain.context import Context
from uno_local.retrain.runs import retrain_lock
from uno_local.retrain.state import RetrainReport, RetrainState
from uno_local.store.learning import start_run, update_run

Stage = Callable[[Context, RetrainState], RetrainState]

PIPELINE: list[tuple[str, Stage]] = [
    ("collect", collect.run),
    ("distill", distill.run),
    ("predict", predict.run),
    ("pair", pair.run),
    ("cluster", cluster.run),
    ("gap", gap.run),
    ("train", train.run),
    ("convert", convert.run),
    ("validate", validate.run),
    ("deploy", deploy.run),
]
STAGES = tuple(name for name, _ in PIPELINE)


class Retrain:
    """One `uno retrain`: `Retrain(app, options, progress=..., should_stop=...).run()` -> the report.
    It takes `Context`'s arguments (`tools` swaps the trainer, exporter and parity checker)."""

    def __init__(self, *args, **kwargs) -> None:
        self.ctx = Context(*args, **kwargs)
        self.state = RetrainState()

    def run(self) -> RetrainReport:
        ctx, start = self.ctx, time.perf_counter()
        timings: dict[str, float] = {}
        with retrain_lock(ctx.app.home):
            run_id = start_run(ctx.store)
            try:
                for name, stage in PIPELINE:
                    update_run(ctx.store, run_id, "running", name)
                    t0 = time.perf_counter()
                    self.state = stage(ctx, self.state)
                    timings[name] = round(time.perf_counter() - t0, 2)
            except NothingToLearnError as exc:
                # Even with nothing to train, what was trained on deleted feedback stops serving.
                if retired := deploy.retire_forgotten(ctx, self.state):
                    exc = NothingToLearnError(
                        f"{exc} The adapters trained on feedback you removed no longer serve: "
                        f"{', '.join(retired)}."
                    )
                update_run(ctx.store, run_id, "failed", summary={"error": str(exc)})
                raise exc from None
            except BaseException as exc:
                update_run(ctx.store, run_id, "failed", summary={"error": str(exc)})
                raise
            report = make_report(ctx, self.state, time.perf_counter() - start, timings)
            update_run(ctx.store, run_id, "finished", summary=report.as_dict())
        return report


def make_report(
    ctx: Context, state: RetrainState, seconds: float, timings: dict[str, float]
) -> RetrainReport:
    clusters = [
        {
            "label": p.row.label,
            "size": len(p.row.members),
            "kept_out": p.kept_out,
            "practice": p.practice,
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
            "examples": p.examples,
        }
        for p in state.plans
    ]
    return RetrainReport(
        logs=len(state.logs),
        pairs=sum(1 for i in state.items.values() if i.pair),
        clusters=clusters,
        deployed=state.deployed,
        seconds=round(seconds, 1),
        stage_seconds=timings,
        cached=dict(ctx.cached),
        trained_tokens=sum(p.train_tokens for p in state.plans),
        gap_skipped_tokens=state.gap_skipped_tokens,
        backend=ctx.backend,
        retired=state.retired,
    )
