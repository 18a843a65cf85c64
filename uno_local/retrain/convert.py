"""Convert: the checkpoints that can ship (the judged Expert epochs, the last Critic epoch) -> llama.cpp
GGUF LoRA adapters beside them (`backends/gguf_export.py` does the export, through `ctx.tools`)."""

from __future__ import annotations

from pathlib import Path

from uno_local.retrain.context import Context
from uno_local.retrain.state import ClusterPlan, RetrainState
from uno_local.validate import epochs_to_judge


def judged_checkpoints(plan: ClusterPlan, most: int) -> dict[int, Path]:
    """Pure: the Expert checkpoints the validator judges, by 1-based epoch."""
    return {epoch: plan.expert_ckpts[epoch - 1] for epoch in epochs_to_judge(len(plan.expert_ckpts), most)}


def gguf(ctx: Context, ckpt: Path) -> Path:
    """The checkpoint's GGUF adapter, exported once."""
    target = ckpt / "adapter.gguf"
    if not target.is_file():
        ctx.tools.export_gguf(ckpt, ctx.app.model_path, target)
    return target


def run(ctx: Context, state: RetrainState) -> RetrainState:
    ckpts = [
        c
        for p in state.plans
        for c in (*judged_checkpoints(p, ctx.cfg.judged_epochs).values(), p.critic_ckpt)
        if c is not None
    ]
    for i, ckpt in enumerate(ckpts, 1):
        gguf(ctx, ckpt)
        ctx.emit("convert", i, len(ckpts))
    if not ckpts:
        ctx.emit("convert", 1, 1, "nothing new to convert")
    return state
