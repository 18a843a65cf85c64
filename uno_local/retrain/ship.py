"""The shipping stages of a retrain: train -> convert -> validate -> deploy.

Training folders are named by the hash of their inputs, so clusters whose data did not change keep
their adapters (online learning); nothing that serves changes until deploy, which swaps adapters and
clusters atomically through the registry, each adapter behind the logits parity gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from uno_local import gap as gaps
from uno_local.errors import AdapterError, NothingToLearnError
from uno_local.retrain.plan import PARITY_PROMPTS, ClusterPlan
from uno_local.runtime import GenerationSettings, complete
from uno_local.store import now_iso
from uno_local.store.learning import input_hash, replace_clusters
from uno_local.train import LogData, critic_examples, expert_examples, split, train_cached
from uno_local.validate import epochs_to_judge, validate_expert


class ShipStages:
    """Mixed into `Retrain`: trains, converts, validates and deploys each cluster's adapters."""

    def _data_hash(self, plan: ClusterPlan) -> str:
        data = [(m, self.items[m].rules, self.items[m].pair) for m in plan.row.members]
        return input_hash(
            data,
            plan.row.high_gap,
            plan.row.effective_rules,
            asdict(self.app.config.train),
            self.backend,
            self.model_name,
            asdict(self.cfg),
        )

    def stage_train(self) -> None:
        todo = []
        for plan in self.plans:
            plan.row.data_hash = self._data_hash(plan)
            plan.train_ids, plan.heldout_ids = split(
                plan.row.members, self.cfg.heldout_share, self.cfg.min_heldout
            )
            old = next((r for r in self._previous.values() if r.data_hash == plan.row.data_hash), None)
            if plan.row.vetoed:
                plan.row.route, plan.row.decision = "base", "vetoed by you: not trained"
            elif old is not None and (old.expert or old.critic):
                plan.reused = True
                for name in ("route", "expert", "critic", "win_rate", "decision", "intrinsic_gap"):
                    setattr(plan.row, name, getattr(old, name))
            else:
                todo.append(plan)
        if not todo and not self.options.recluster:
            raise NothingToLearnError(
                "Nothing new to learn: every cluster's adapters already include all of your feedback."
            )
        for n, plan in enumerate(todo, 1):
            logs = [self.items[m] for m in plan.train_ids]
            if plan.row.high_gap:
                tokens = sum(
                    len(self.app.runtime.tokenize(self.items[m].pair["chosen"])) * 2
                    for m in plan.train_ids
                    if self.items[m].pair
                )
                self.gap_skipped_tokens += tokens
                self._train_critic(plan, n, len(todo))
            else:
                examples = expert_examples(logs)
                if len(examples) < 2:
                    plan.row.decision = "too few preference pairs to train an Expert"
                    continue
                plan.expert_ckpts, metrics = self._train("expert", plan, examples, "preference", n, len(todo))
                plan.train_tokens += int(metrics.get("tokens_per_s", 0) * metrics.get("seconds", 0))
                if "reference_logp_chosen" in metrics:  # the trainer's own reference forwards, for free
                    plan.row.intrinsic_gap = gaps.intrinsic_gap(
                        metrics["reference_logp_chosen"], metrics["reference_logp_rejected"]
                    )

    def _train(self, kind: str, plan: ClusterPlan, examples, objective: str, n: int, total: int):
        folder = self.app.home / "work" / f"{kind}-{plan.row.data_hash}"

        def report(p) -> None:
            self._emit(
                "train",
                p.step,
                p.total_steps,
                f"{kind} c{plan.row.label} ({n}/{total}) loss {p.loss:.3f} margin {p.reward_margin:.2f} "
                f"{p.tokens_per_s:.0f} tok/s ETA {p.eta_s:.0f}s",
            )

        before = self.cached["train"]
        ckpts, metrics = train_cached(
            self.trainer, examples, self.app.config.train, folder, objective, report, self.should_stop
        )
        if metrics.get("reused"):
            self.cached["train"] = before + 1
        return ckpts, metrics

    def _train_critic(self, plan: ClusterPlan, n: int, total: int) -> None:
        examples = critic_examples([self.items[m] for m in plan.row.members])
        if len(examples) < 2:
            plan.row.route, plan.row.decision = "base", plan.row.decision or "too few rules to train a Critic"
            return
        plan.critic_ckpts, metrics = self._train("critic", plan, examples, "sft", n, total)
        plan.train_tokens += int(metrics.get("tokens_per_s", 0) * metrics.get("seconds", 0))

    def _gguf(self, ckpt: Path) -> Path:
        from backends.gguf_export import export_peft_to_gguf

        target = ckpt / "adapter.gguf"
        if not target.is_file():
            export_peft_to_gguf(ckpt, self.app.model_path, target)
        return target

    def _judged(self, plan: ClusterPlan) -> dict[int, Path]:
        """The Expert checkpoints the validator judges, by 1-based epoch."""
        epochs = epochs_to_judge(len(plan.expert_ckpts), self.cfg.judged_epochs)
        return {epoch: plan.expert_ckpts[epoch - 1] for epoch in epochs}

    def stage_convert(self) -> None:
        """Export what can ship: the judged Expert epochs and the last Critic epoch."""
        ckpts = [c for p in self.plans for c in (*self._judged(p).values(), p.critic_ckpt) if c is not None]
        for i, ckpt in enumerate(ckpts, 1):
            self._gguf(ckpt)
            self._emit("convert", i, len(ckpts))
        if not ckpts:
            self._emit("convert", 1, 1, "nothing new to convert")

    def _answers(self, queries: list[LogData], adapter_file: Path | None) -> list[str]:
        runtime = self.app.runtime
        name = None
        if adapter_file is not None:
            name = f"validate:{adapter_file}"
            runtime.load_adapter(name, adapter_file)
        try:
            settings = GenerationSettings.greedy(self.answer_tokens)
            return [complete(runtime, log.prompt, settings, adapter=name)[0] for log in queries]
        finally:
            if name:
                runtime.unload_adapter(name)

    def stage_validate(self) -> None:
        todo = [p for p in self.plans if p.expert_ckpts]
        for n, plan in enumerate(todo, 1):
            heldout = [self.items[m] for m in plan.heldout_ids]
            base = [
                self._cached(
                    "base_answer",
                    str(log.message_id),
                    (log.prompt, self.answer_tokens),
                    lambda log=log: self._answers([log], None)[0],
                    {"decoding": "greedy"},
                )
                for log in heldout
            ]
            per_epoch = {}
            for epoch, ckpt in self._judged(plan).items():
                self._emit(
                    "validate",
                    n,
                    len(todo),
                    f"c{plan.row.label} epoch {epoch}: {len(heldout)} held-out answers",
                )
                per_epoch[epoch] = self._answers(heldout, self._gguf(ckpt)) if heldout else []
            plan.validation = validate_expert(
                heldout, base, per_epoch, self.cfg.win_rate, self.cfg.min_heldout
            )
            plan.row.win_rate = (
                plan.validation.win_rates.get(plan.validation.epoch) if plan.validation.epoch else None
            )
            plan.row.decision = plan.validation.reason
            if not plan.validation.ship:
                self._train_critic(
                    plan, n, len(todo)
                )  # a failed Expert sends the cluster to the Reflective path
                if plan.critic_ckpt:
                    self._gguf(plan.critic_ckpt)
            self._emit("validate", n, len(todo), f"c{plan.row.label}: {plan.row.decision}")

    def _parity(self, ckpt: Path) -> Callable[[Path], None]:
        """The deploy gate for `ckpt`: one `ParityChecker` serves the whole deploy stage, loaded on first use."""

        def check(gguf: Path) -> None:
            if self.parity_checker is None:
                from backends.hf_base import ensure_hf_base
                from backends.parity import ParityChecker

                hf_dir = ensure_hf_base(self.app.model_path, self.app.cache_dir)
                self.parity_checker = ParityChecker(self.app.model_path, hf_dir, PARITY_PROMPTS)
            result = self.parity_checker.check(ckpt, gguf)
            if not result.passes():
                raise AdapterError(
                    f"The exported adapter does not match the trained one (export error "
                    f"{result.err_rms / max(result.floor_rms, 1e-6):.2f}x the runtimes' own difference, "
                    f"top-1 agreement {result.top1_agreement:.2f}); it was not deployed."
                )

        return check

    def _deploy_one(self, plan: ClusterPlan, kind: str, ckpt: Path, metrics: dict) -> str | None:
        try:
            record = self.app.registry.deploy(
                name=f"{kind}-c{plan.row.label}",
                kind=kind,
                gguf_file=self._gguf(ckpt),
                peft_dir=ckpt,
                base_model=self.model_name,
                sources=sorted(plan.train_ids if kind == "expert" else plan.row.members),
                metrics=metrics,
                config=asdict(self.app.config.train),
                cluster=str(plan.row.label),
                backend=self.backend,
                verify=self._parity(ckpt),
            )
        except AdapterError as exc:
            plan.row.decision = f"{plan.row.decision}; {exc}"
            return None
        self.deployed.append(record.key)
        return record.name

    def stage_deploy(self) -> None:
        try:
            self._deploy_all()
        finally:
            if self.parity_checker is not None:
                self.parity_checker.close()
                self.parity_checker = None

    def _deploy_all(self) -> None:
        for n, plan in enumerate(self.plans, 1):
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
                row.expert = self._deploy_one(plan, "expert", plan.expert_ckpts[val.epoch - 1], metrics)
            if plan.critic_ckpt:
                row.critic = self._deploy_one(plan, "critic", plan.critic_ckpt, {"gap": row.gap})
            row.route = "expert" if row.expert else ("reflective" if row.critic else "base")
            if not row.decision:
                row.decision = (
                    "high gap: Critic trained for the Reflective path" if row.high_gap else "not trained"
                )
            self._emit("deploy", n, len(self.plans), f"c{row.label}: {row.route}")
        for plan in self.plans:
            plan.row.updated_at = now_iso()
        replace_clusters(self.store, [p.row for p in self.plans])
        self.app.registry.clean_staging()
        if (
            not self.deployed
            and not any(p.reused for p in self.plans)
            and not any(p.row.expert or p.row.critic for p in self.plans)
        ):
            self._emit("deploy", 1, 1, "no adapter passed validation; answers stay on the base model")
