"""What the learning loop keeps in SQLite: stage artifacts (with provenance), the cluster table and
the retrain runs.

Artifacts are content-addressed: each is stored under (stage, key) with the hash of its inputs, so a
rerun (after a crash, or with new logs) reuses every result whose inputs did not change. The
cluster table is what routing reads; it is replaced in one transaction at the end of a retrain.
`retrain_runs` records each run: running, finished, failed, or interrupted (its process was killed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from uno_local.store import Store, now_iso


def input_hash(*parts: Any) -> str:
    """A stable hash of JSON-able inputs."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def get_artifact(store: Store, stage: str, key: str, expected_hash: str) -> Any | None:
    """The stored result for (stage, key) if it was computed from the same inputs."""
    row = store.db.execute(
        "SELECT input_hash, data FROM artifacts WHERE stage = ? AND key = ?", [stage, key]
    ).fetchone()
    return json.loads(row[1]) if row and row[0] == expected_hash else None


def put_artifact(store: Store, stage: str, key: str, in_hash: str, data: Any, provenance: dict) -> None:
    with store.write():
        store.db.execute(
            "INSERT OR REPLACE INTO artifacts (stage, key, input_hash, data, provenance, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                stage,
                key,
                in_hash,
                json.dumps(data, default=str),
                json.dumps(provenance, default=str),
                now_iso(),
            ],
        )


def artifacts(store: Store, stage: str) -> dict[str, Any]:
    rows = store.db.execute("SELECT key, data FROM artifacts WHERE stage = ?", [stage]).fetchall()
    return {key: json.loads(data) for key, data in rows}


@dataclass
class ClusterRow:
    label: int
    centroid: list[float]
    members: list[int]  # message ids of the logs in the cluster
    rules: list[str]  # the most common distilled rules
    user_rules: list[str] | None = None  # the user's edit of `rules`, if any
    gap: float | None = None
    intrinsic_gap: float | None = None
    high_gap: bool = False
    route: str = "base"  # expert, reflective, base
    expert: str | None = None  # adapter name in the registry
    critic: str | None = None
    win_rate: float | None = None
    decision: str = ""
    vetoed: bool = False
    data_hash: str | None = None
    updated_at: str = field(default_factory=now_iso)
    radius: float | None = None  # routing radius from the members' spread (cluster.cluster_radius)

    @property
    def effective_rules(self) -> list[str]:
        return self.user_rules if self.user_rules is not None else self.rules


def win_rate_text(win_rate: float | None, route: str) -> str:
    """Pure: a cluster's validator win rate as a user reads it: "-" when nothing was judged, and marked
    "not shipped" when the cluster answers with the base model (the rate is then a refused adapter's,
    which "route base, win rate 0.67" read as the route's own)."""
    if win_rate is None:
        return "-"
    return f"{win_rate:.2f}" + (" (not shipped)" if route == "base" else "")


_JSON = ("centroid", "members", "rules", "user_rules")


def load_clusters(store: Store) -> list[ClusterRow]:
    cur = store.db.execute("SELECT * FROM clusters ORDER BY label")
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        data = dict(zip(names, row, strict=True))
        for key in _JSON:
            data[key] = json.loads(data[key]) if data[key] is not None else None
        data["high_gap"], data["vetoed"] = bool(data["high_gap"]), bool(data["vetoed"])
        out.append(ClusterRow(**data))
    return out


def replace_clusters(store: Store, rows: list[ClusterRow]) -> None:
    """Swap in a whole new cluster table at once (routing never sees half of it)."""
    with store.write() as db:
        db.execute("DELETE FROM clusters")
        for row in rows:
            data = asdict(row)
            for key in _JSON:
                data[key] = json.dumps(data[key]) if data[key] is not None else None
            db.execute(
                f"INSERT INTO clusters ({', '.join(data)}) VALUES ({', '.join('?' * len(data))})",
                list(data.values()),
            )


def serving_key(store: Store) -> tuple:
    """Changes whenever the adapters or the cluster table change: one cheap query per answer tells the
    responder whether a retrain or an `uno adapters` command changed what serves."""
    db = store.db
    return (
        db.execute("SELECT COUNT(*), MAX(id), GROUP_CONCAT(status || enabled) FROM adapters").fetchone(),
        db.execute("SELECT COUNT(*), MAX(updated_at), SUM(vetoed) FROM clusters").fetchone(),
    )


def update_cluster(store: Store, label: int, **fields: Any) -> None:
    for key in _JSON:
        if key in fields and fields[key] is not None:
            fields[key] = json.dumps(fields[key])
    sets = ", ".join(f"{k} = ?" for k in fields)
    with store.write():
        store.db.execute(
            f"UPDATE clusters SET {sets}, updated_at = ? WHERE label = ?",
            [*fields.values(), now_iso(), label],
        )


@dataclass
class RetrainRun:
    """One `uno retrain` as recorded: its status, the stage it reached, and its report (or error)."""

    id: int
    started_at: str
    finished_at: str | None
    status: str  # running, finished, failed, interrupted
    stage: str | None
    summary: dict | None


def start_run(store: Store) -> int:
    """Record a new run as running; earlier rows still "running" were killed (the caller holds the
    retrain lock, so no other run is alive) and become "interrupted"."""
    with store.write():
        store.db.execute("UPDATE retrain_runs SET status = 'interrupted' WHERE status = 'running'")
        return store.db.execute(
            "INSERT INTO retrain_runs (started_at, status) VALUES (?, 'running')", [now_iso()]
        ).lastrowid


def update_run(
    store: Store, run_id: int, status: str, stage: str | None = None, summary: dict | None = None
) -> None:
    """Move a run to `status` (and `stage`); a summary also ends it (finished_at)."""
    fields: dict[str, Any] = {"status": status}
    if stage:
        fields["stage"] = stage
    if summary is not None:
        fields["summary"] = json.dumps(summary, default=str)
        fields["finished_at"] = now_iso()
    with store.write():
        store.db.execute(
            f"UPDATE retrain_runs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
            [*fields.values(), run_id],
        )


def retrain_runs(store: Store, *, after_id: int = 0, limit: int = 20) -> list[RetrainRun]:
    """The recorded retrains with an id above `after_id`, newest first."""
    rows = store.db.execute(
        "SELECT id, started_at, finished_at, status, stage, summary FROM retrain_runs WHERE id > ? "
        "ORDER BY id DESC LIMIT ?",
        [after_id, limit],
    ).fetchall()
    return [RetrainRun(*row[:5], json.loads(row[5]) if row[5] else None) for row in rows]


def last_run(store: Store) -> RetrainRun | None:
    """The most recent run, as recorded (a killed run still reads "running" here)."""
    runs = retrain_runs(store, limit=1)
    return runs[0] if runs else None
