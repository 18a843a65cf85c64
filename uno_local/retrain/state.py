"""The typed state a retrain carries from stage to stage, its options, its progress events and its report.

Every stage reads a `RetrainState` and returns it; every field is declared here, so a reader can see
what each stage adds (the comment on each field names the stage that fills it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from uno_local.store import Log
from uno_local.store.learning import ClusterRow
from uno_local.train import LogData
from uno_local.validate import Validation


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
    """A cluster as it moves through gap, train, convert, validate and deploy."""

    row: ClusterRow
    kept_out: list[int] = field(
        default_factory=list
    )  # cluster: members whose rules disagree (`uno.rule_consistency`)
    train_ids: list[int] = field(default_factory=list)
    practice: list[str] = field(default_factory=list)  # train: new questions its Expert practised on
    practice_edit: str = ""  # train: the edit practised, in words (`pair.Edit.describe`)
    heldout_ids: list[int] = field(default_factory=list)
    reused: bool = False
    expert_ckpts: list[Path] = field(default_factory=list)
    critic_ckpts: list[Path] = field(default_factory=list)
    validation: Validation | None = None  # validate: the Expert's
    reflective: Validation | None = None  # validate: the Reflective path's, when a Critic was trained
    examples: list[dict] = field(default_factory=list)  # validate: held-out {query, before, after}
    train_tokens: int = 0

    @property
    def learning_members(self) -> list[int]:
        """The members that train and validate its adapters: all but those kept out."""
        return [m for m in self.row.members if m not in set(self.kept_out)]

    @property
    def critic_ckpt(self) -> Path | None:
        """The Critic checkpoint that ships: its last epoch (an SFT objective has nothing to judge)."""
        return self.critic_ckpts[-1] if self.critic_ckpts else None


@dataclass
class RetrainState:
    """What the stages know so far; each field is filled by the stage named beside it."""

    previous: dict[int, ClusterRow] = field(default_factory=dict)  # collect: the cluster table before the run
    logs: list[Log] = field(default_factory=list)  # collect: logs with feedback
    items: dict[int, LogData] = field(default_factory=dict)  # distill (rules), predict, pair
    query_vecs: dict[int, np.ndarray] = field(default_factory=dict)  # cluster: query embeddings
    plans: list[ClusterPlan] = field(default_factory=list)  # cluster; gap, train, validate, deploy fill them
    gap_skipped_tokens: int = 0  # train: Expert tokens a high gap sent to the Critic instead
    deployed: list[str] = field(default_factory=list)  # deploy: adapter keys that went live
    retired: list[str] = field(default_factory=list)  # deploy: keys trained on feedback deleted since


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
    retired: list[str] = field(default_factory=list)  # trained on feedback deleted since: no longer serve

    def as_dict(self) -> dict:
        return asdict(self)
