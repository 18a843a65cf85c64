"""Deploy: validated Experts and trained Critics -> versioned adapters in the registry, each behind the
logits parity gate (`backends/parity.py`), then the cluster table swapped in one transaction.
Nothing that serves changes before this stage."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from uno_local.errors import AdapterError
from uno_local.retrain.context import Context
from uno_local.retrain.convert import gguf
from uno_local.retrain.state import ClusterPlan, RetrainState
from uno_local.store import now_iso
from uno_local.store.learning import replace_clusters

# Fixed, varied prompts for the deploy-time logits parity check (the "fixed prompts").
PARITY_PROMPTS = [
    "How do I make a fruit salad?",
    "How do I cook mushrooms?",
    "What is the capital of Japan?",
    "Explain photosynthesis.",
    "How do I boil an egg?",
    "Write a poem about rain.",
]


def choose_route(expert: str | None, critic: str | None) -> str:
    """Pure: a deployed Expert answers; else a deployed Critic gives the Reflective path; else the base."""
    return "expert" if expert else ("reflective" if critic else "base")


def default_decision(high_gap: bool) -> str:
    """Pure: what `uno rules` says of a cluster when no stage gave a reason."""
    return "high gap: Critic trained for the Reflective path" if high_gap else "not trained"


class ParityGate:
    """The deploy gate: one `ParityChecker` for the whole stage, loaded with its first adapter."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.checker = None

    def for_checkpoint(self, ckpt: Path):
        def check(gguf_file: Path) -> None:
            if self.checker is None:
                app = self.ctx.app
                # The checker holds the base twice in float32 (torch, and llama.cpp's copy): the chat
                # model is not needed beside them (docs/benchmarks.md, "uno retrain ... peak memory").
                app.runtime.release()
                self.checker = self.ctx.tools.open_parity_checker(
                    app.model_path, app.cache_dir, PARITY_PROMPTS
                )
            result = self.checker.check(ckpt, gguf_file)
            if not result.passes():
                raise AdapterError(
                    f"The exported adapter does not match the trained one (export error "
                    f"{result.error_ratio:.2f}x what rounding explains, "
                    f"top-1 agreement {result.top1_agreement:.2f}); it was not deployed."
                )

        return check

    def close(self) -> None:
        if self.checker is not None:
            self.checker.close()
            self.checker = None


def run(ctx: Context, state: RetrainState) -> RetrainState:
    gate = ParityGate(ctx)
    try:
        _deploy_all(ctx, state, gate)
    finally:
        gate.close()
    return state


def _deploy_one(
    ctx: Context,
    state: RetrainState,
    gate: ParityGate,
    plan: ClusterPlan,
    kind: str,
    ckpt: Path,
    metrics: dict,
) -> str | None:
    try:
        record = ctx.app.registry.deploy(
            name=f"{kind}-c{plan.row.label}",
            kind=kind,
            gguf_file=gguf(ctx, ckpt),
            peft_dir=ckpt,
            base_model=ctx.model_name,
            sources=sorted(plan.train_ids if kind == "expert" else plan.learning_members),
            metrics=metrics,
            config=asdict(ctx.app.config.train),
            cluster=str(plan.row.label),
            backend=ctx.backend,
            verify=gate.for_checkpoint(ckpt),
        )
    except AdapterError as exc:
        plan.row.decision = f"{plan.row.decision}; {exc}"
        return None
    state.deployed.append(record.key)
    return record.name


def _deploy_all(ctx: Context, state: RetrainState, gate: ParityGate) -> None:
    for n, plan in enumerate(state.plans, 1):
        if plan.reused or plan.row.vetoed:
            continue
        row, val = plan.row, plan.validation
        if val and val.ship:
            metrics = {
                "win_rate": row.win_rate,
                "epoch": val.epoch,
                "win_rates": val.win_rates,
                "heldout": val.n_heldout,
                "gap": row.gap,
            }
            row.expert = _deploy_one(
                ctx, state, gate, plan, "expert", plan.expert_ckpts[val.epoch - 1], metrics
            )
        if plan.critic_ckpt and plan.reflective and plan.reflective.ship:
            metrics = {
                "gap": row.gap,
                "win_rate": plan.reflective.win_rates[0],
                "heldout": plan.reflective.n_heldout,
            }
            row.critic = _deploy_one(ctx, state, gate, plan, "critic", plan.critic_ckpt, metrics)
        row.route = choose_route(row.expert, row.critic)
        row.decision = row.decision or default_decision(row.high_gap)
        ctx.emit("deploy", n, len(state.plans), f"c{row.label}: {row.route}")
    state.retired = retire_forgotten(ctx, state)
    for plan in state.plans:
        plan.row.updated_at = now_iso()
    replace_clusters(ctx.store, [p.row for p in state.plans])
    ctx.app.registry.clean_staging()
    if not state.deployed and not any(p.reused or p.row.expert or p.row.critic for p in state.plans):
        ctx.emit("deploy", 1, 1, "no adapter passed validation; answers stay on the base model")


def retire_forgotten(ctx: Context, state: RetrainState) -> list[str]:
    """Adapters trained on feedback deleted since stop serving (and cannot be rolled back to)."""
    retired = ctx.app.registry.retire_forgotten({log.message_id for log in state.logs})
    if retired:
        ctx.emit("deploy", 1, 1, f"retired {', '.join(retired)}: trained on feedback you removed")
    return retired
