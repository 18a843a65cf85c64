"""`uno retrain`: the UNO loop over the store, stage by stage, resumable, one run at a time.

The stages, in order, each a module here named for its verb with a `run(ctx, state) -> state`
function (the pure cores they call are the top-level modules `uno_local/distill.py`, `pair.py`,
`cluster.py`, `gap.py`, `train.py`, `validate.py`):

    collect -> distill -> predict -> pair -> cluster -> gap -> train -> convert -> validate -> deploy

`pipeline.py` lists them (`PIPELINE`) and runs them (`Retrain`); `state.py` is the typed state they
pass along; `context.py` holds what they share (store, models, progress, the artifact cache);
`runs.py` the lock and the run records. Importing this package stays light (`uno status` does):
the pipeline's names load on first use.
"""

from uno_local.retrain.runs import choose_backend, describe_run, retrain_alive, retrain_lock

_LAZY = {
    "PIPELINE": "pipeline",
    "STAGES": "pipeline",
    "Retrain": "pipeline",
    "ClusterPlan": "state",
    "RetrainOptions": "state",
    "RetrainReport": "state",
    "RetrainState": "state",
    "StageEvent": "state",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = ["choose_backend", "describe_run", "retrain_alive", "retrain_lock", *_LAZY]
