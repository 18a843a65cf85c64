"""`uno retrain`: the UNO loop over the store, stage by stage, resumable, one run at a time.

collect -> distill -> predict -> pair -> cluster -> gap -> train -> convert -> validate -> deploy

Each stage is a pure core in its own module (distill.py, pair.py, cluster.py, gap.py, train.py,
validate.py) with the I/O here. Per-log results are stored as content-addressed artifacts and
training folders are named by the hash of their inputs, so a rerun after a crash continues from
what finished, and clusters whose data did not change keep their adapters (online learning).
Nothing that serves changes until the deploy stage, which swaps adapters and clusters atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from uno_local import cluster as clustering
from uno_local import gap as gaps
from uno_local.distill import FeedbackInput, distill_rules, is_implicit_feedback, predict_rules
from uno_local.errors import AdapterError, NothingToLearnError, RetrainLockedError, TrainingError
from uno_local.pair import make_pair
from uno_local.runtime import GenerationSettings, complete
from uno_local.store import Log, now_iso
from uno_local.store.learning import (
    ClusterRow,
    get_artifact,
    input_hash,
    load_clusters,
    put_artifact,
    replace_clusters,
)
from uno_local.train import LogData, critic_examples, expert_examples, split, train_cached
from uno_local.validate import Validation, validate_expert

STAGES = ("collect", "distill", "predict", "pair", "cluster", "gap", "train", "convert", "validate", "deploy")
RULES_TOKENS = 40  # rules are short; grammar-constrained sampling slows down on long strings
MAX_RULE_CHARS = 90
ANSWER_TOKENS = 160  # revisions and held-out answers; below train.max_answer_tokens so endings are learned
# Fixed, varied prompts for the deploy-time logits parity check (the "fixed prompts").
# Measured on a trained habit adapter: these gave delta correlation 0.991; the adapter's own four
# training queries gave 0.984 (Q4_1's activation quantization in llama.cpp sets the noise floor).
PARITY_PROMPTS = [
    "How do I make a fruit salad?",
    "How do I cook mushrooms?",
    "What is the capital of Japan?",
    "Explain photosynthesis.",
    "How do I boil an egg?",
    "Write a poem about rain.",
]
FALLBACK_WARD = 2.5  # docs/thresholds.md: recovers the scenario topics from 36 to 102 logs


@dataclass
class StageEvent:
    stage: str
    done: int
    total: int
    message: str = ""


Progress = Callable[[StageEvent], None]


@dataclass
class RetrainOptions:
    backend: str = "auto"
    recluster: bool = False  # cluster every log afresh instead of joining existing clusters


@dataclass
class ClusterPlan:
    """A cluster as it moves through train, convert, validate and deploy."""

    row: ClusterRow
    train_ids: list[int] = field(default_factory=list)
    heldout_ids: list[int] = field(default_factory=list)
    reused: bool = False
    expert_ckpts: list[Path] = field(default_factory=list)
    critic_ckpts: list[Path] = field(default_factory=list)
    validation: Validation | None = None
    train_tokens: int = 0


@dataclass
class RetrainReport:
    logs: int
    pairs: int
    clusters: list[dict]
    deployed: list[str]
    seconds: float
    stage_seconds: dict[str, float]
    cached: dict[str, int]
    trained_tokens: int
    gap_skipped_tokens: int
    backend: str

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def retrain_lock(home: Path):
    """Only one retrain at a time, across processes (an OS lock: a crash releases it)."""
    path = home / "retrain.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RetrainLockedError("Another retrain is already running; wait for it to finish.") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def feedback_input(log: Log) -> FeedbackInput:
    fb = log.feedback
    return FeedbackInput(
        query=log.query,
        answer=log.answer,
        rating=fb.rating if fb else None,
        comment=fb.comment if fb else None,
        correction=fb.correction if fb else None,
        next_user=log.next_user,
    )


def choose_backend(name: str) -> str:
    """auto: MLX on Apple silicon, torch elsewhere."""
    if name != "auto":
        return name
    import platform

    return "mlx" if platform.system() == "Darwin" and platform.machine() == "arm64" else "torch"


class Retrain:
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
        self.answer_tokens = min(ANSWER_TOKENS, app.config.generation.max_tokens)
        self.cached: Counter = Counter()
        self.logs: list[Log] = []
        self.items: dict[int, LogData] = {}
        self.plans: list[ClusterPlan] = []
        self.deployed: list[str] = []
        self.gap_skipped_tokens = 0
        self._trainer = None

    # helpers
    def _emit(self, stage: str, done: int, total: int, message: str = "") -> None:
        self.progress(StageEvent(stage, done, total, message))
        if self.should_stop():
            raise TrainingError(
                f"Retrain stopped during {stage}; what is deployed keeps serving. Run it again to resume."
            )

    def _json(self, messages: list[dict], schema: dict) -> str:
        """Grammar-constrained JSON, cut short when a string runs on: llama.cpp's grammar sampling slows
        down with string length, and a rule that long is unusable anyway (the caller then falls back)."""
        parts: list[str] = []
        events = self.app.runtime.stream(
            messages, GenerationSettings.greedy(RULES_TOKENS), json_schema=schema
        )
        try:
            for event in events:
                parts.append(event.delta)
                text = "".join(parts)
                if len(text) - text.rfind('"') > MAX_RULE_CHARS:
                    break
        finally:
            events.close()
        return "".join(parts)

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

    def stage_collect(self) -> None:
        self.logs = [
            log
            for log in self.store.logs()
            if (log.feedback and not log.feedback.is_empty) or is_implicit_feedback(log.next_user)
        ]
        if not self.logs:
            raise NothingToLearnError(
                "There is no feedback to learn from yet; rate, comment on or correct some answers first."
            )
        self._emit("collect", len(self.logs), len(self.logs), f"{len(self.logs)} logs with feedback")

    def stage_distill(self) -> None:
        for i, log in enumerate(self.logs, 1):
            item = feedback_input(log)
            data = self._cached(
                "distill",
                str(log.message_id),
                (asdict(item),),
                lambda item=item: asdict(distill_rules(item, self._json)),
                {"log": log.message_id, "max_tokens": RULES_TOKENS, "decoding": "greedy, JSON schema"},
            )
            self.items[log.message_id] = LogData(
                log.message_id,
                log.messages[:-1],
                log.query,
                log.answer,
                item.correction,
                data["rules"],
                [],
                None,
            )
            self._emit("distill", i, len(self.logs))

    def stage_predict(self) -> None:
        for i, log in enumerate(self.logs, 1):
            if not self.items[log.message_id].rules:  # no feedback rules: the gap is undefined, skip the call
                self._emit("predict", i, len(self.logs))
                continue
            data = self._cached(
                "predict",
                str(log.message_id),
                (log.query,),
                lambda q=log.query: asdict(predict_rules(q, self._json)),
                {"log": log.message_id, "max_tokens": RULES_TOKENS},
            )
            self.items[log.message_id].predicted = data["rules"]
            self._emit("predict", i, len(self.logs))

    def _revise(self, messages: list[dict], n: int) -> list[str]:
        return [
            complete(self.app.runtime, messages, GenerationSettings(0.8, 0.9, self.answer_tokens, 42 + j))[0]
            for j in range(n)
        ]

    def stage_pair(self) -> None:
        for i, log in enumerate(self.logs, 1):
            item, data = feedback_input(log), self.items[log.message_id]
            pair = self._cached(
                "pair",
                str(log.message_id),
                (asdict(item), data.rules, self.cfg.revisions),
                lambda item=item, rules=data.rules: (
                    asdict(p) if (p := make_pair(item, rules, self._revise, self.cfg.revisions)) else {}
                ),
                {"log": log.message_id, "revisions": self.cfg.revisions, "judge": "deterministic"},
            )
            data.pair = pair or None
            self._emit("pair", i, len(self.logs))

    def stage_cluster(self) -> None:
        ids = [log.message_id for log in self.logs]
        embedder = self.app.embedder
        eq = embedder.encode([self.items[i].query for i in ids])
        er = embedder.encode(["\n".join(self.items[i].rules) for i in ids])
        self._eq = dict(zip(ids, eq, strict=True))
        previous = {row.label: row for row in load_clusters(self.store)}
        members: dict[int, list[int]] = {}
        pending = ids
        if previous and not self.options.recluster:
            members, pending = self._join_existing(previous, ids)
        if len(pending) >= self.cfg.min_cluster_size:
            x = clustering.features(
                np.stack([self._eq[i] for i in pending]), np.stack([er[ids.index(i)] for i in pending])
            )
            threshold = self.cfg.ward_threshold or clustering.calibrate_ward_threshold(x) or FALLBACK_WARD
            labels = clustering.enforce_min_size(
                clustering.ward_clusters(x, threshold), x, self.cfg.min_cluster_size
            )
            offset = 1 + max([*members, *previous], default=-1)
            for mid, label in zip(pending, labels, strict=True):
                if label >= 0:
                    members.setdefault(offset + int(label), []).append(mid)
        self.plans = []
        for label, mids in sorted(members.items()):
            old = previous.get(label)
            rules = [r for r, _ in Counter(r for m in mids for r in self.items[m].rules).most_common(5)]
            centroid = np.mean([self._eq[m] for m in mids], axis=0)
            row = ClusterRow(
                label=label,
                centroid=centroid.astype(float).tolist(),
                members=sorted(mids),
                rules=rules,
                user_rules=old.user_rules if old else None,
                vetoed=old.vetoed if old else False,
            )
            self.plans.append(ClusterPlan(row))
        self._previous = previous
        sizes = ", ".join(str(len(p.row.members)) for p in self.plans)
        self._emit("cluster", 1, 1, f"{len(self.plans)} clusters ({sizes} logs)")

    def _join_existing(
        self, previous: dict[int, ClusterRow], ids: list[int]
    ) -> tuple[dict[int, list[int]], list[int]]:
        """Online: known logs stay in their cluster, new ones join the nearest within reach."""
        current = set(ids)
        members = {label: [m for m in row.members if m in current] for label, row in previous.items()}
        known = {m for mids in members.values() for m in mids}
        router = clustering.Router(
            {k: np.asarray(r.centroid) for k, r in previous.items()}, self.cfg.unseen_distance
        )
        pending = []
        for mid in ids:
            if mid in known:
                continue
            label, _ = router.route(self._eq[mid])
            (members[label].append(mid) if label is not None else pending.append(mid))
        return {k: v for k, v in members.items() if v}, pending

    def stage_gap(self) -> None:
        embedder = self.app.embedder
        for plan in self.plans:
            per_log = []
            for mid in plan.row.members:
                item = self.items[mid]
                fb = embedder.encode(item.rules) if item.rules else np.zeros((0, embedder.dim), np.float32)
                pred = (
                    embedder.encode(item.predicted)
                    if item.predicted
                    else np.zeros((0, embedder.dim), np.float32)
                )
                per_log.append(gaps.log_gap(fb, pred))
            plan.row.gap = gaps.cluster_gap(per_log)
            plan.row.high_gap = gaps.is_high_gap(plan.row.gap, self.cfg.gap_threshold)
            plan.row.intrinsic_gap = self._intrinsic_gap(plan)
        self._emit("gap", 1, 1, ", ".join(f"c{p.row.label}: {p.row.gap:.2f}" for p in self.plans))

    def _intrinsic_gap(self, plan: ClusterPlan) -> float | None:
        """The base model's mean per-token log-prob margin of chosen over rejected (recorded, not used)."""
        pairs = [self.items[m].pair for m in plan.row.members if self.items[m].pair]
        pairs = [p for p in pairs if p["chosen"] != p["rejected"]]
        if not pairs or not hasattr(self.trainer, "pair_logprobs"):
            return None
        examples = expert_examples([self.items[m] for m in plan.row.members if self.items[m].pair])
        margins = self.trainer.pair_logprobs([e for e in examples if not e.is_sft], self.app.config.train)
        return gaps.intrinsic_gap([c for c, _ in margins], [r for _, r in margins])

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
                for name in ("route", "expert", "critic", "win_rate", "decision"):
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

    def stage_convert(self) -> None:
        ckpts = [c for p in self.plans for c in (*p.expert_ckpts, *p.critic_ckpts)]
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
            for epoch, ckpt in enumerate(plan.expert_ckpts, 1):
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
                for ckpt in plan.critic_ckpts:
                    self._gguf(ckpt)
            self._emit("validate", n, len(todo), f"c{plan.row.label}: {plan.row.decision}")

    def _parity(self, ckpt: Path) -> Callable[[Path], None]:
        def check(gguf: Path) -> None:
            from backends.hf_base import ensure_hf_base
            from backends.parity import adapter_parity

            prompts = PARITY_PROMPTS
            result = adapter_parity(
                self.app.model_path,
                ensure_hf_base(self.app.model_path, self.app.cache_dir),
                ckpt,
                gguf,
                prompts,
            )
            if not result.passes():
                raise AdapterError(
                    f"The exported adapter does not match the trained one (logit-change correlation "
                    f"{result.delta_corr:.3f}, top-1 agreement {result.top1_agreement:.2f}); it was not deployed."
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
            if plan.critic_ckpts:
                row.critic = self._deploy_one(plan, "critic", plan.critic_ckpts[-1], {"gap": row.gap})
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
