"""`uno retrain`: the UNO loop over the store, stage by stage, resumable, one run at a time.

collect -> distill -> predict -> pair -> cluster -> gap -> train -> convert -> validate -> deploy

Each stage is a pure core in its own module (distill.py, pair.py, cluster.py, gap.py, train.py,
validate.py); the I/O shells live in `learn.py` (up to gap) and `ship.py` (train to deploy), and the
orchestration (artifact cache, progress, run records, report) in `run.py`. A rerun after a crash
continues from what finished; nothing that serves changes until the deploy stage.
"""

from uno_local.retrain.plan import (
    FALLBACK_WARD,
    STAGES,
    ClusterPlan,
    RetrainOptions,
    RetrainReport,
    StageEvent,
    choose_backend,
    retrain_lock,
)
from uno_local.retrain.run import Retrain

__all__ = [
    "FALLBACK_WARD",
    "STAGES",
    "ClusterPlan",
    "Retrain",
    "RetrainOptions",
    "RetrainReport",
    "StageEvent",
    "choose_backend",
    "retrain_lock",
]
