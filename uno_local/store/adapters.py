"""The `adapters` table: one row per adapter version (its folder, checksum, base, status).

SQL only; the folders, checksums and deploy order live in `uno_local/registry.py`. `base_id` scopes a
call to one base model's adapters (None: every base). Statuses: deployed (what serves when enabled),
previous (what a rollback brings back), retired.
"""

from __future__ import annotations

from typing import Any

from uno_local.store import Store

COLUMNS = (
    "id, name, version, kind, cluster, status, enabled, path, checksum, base_model, backend, sources, "
    "metrics, created_at"
)


def _where(base_id: str | None, **equal: Any) -> tuple[str, list]:
    """A WHERE clause of `column = ?` terms for the values that are not None, scoped to `base_id`."""
    terms = {**equal, "base_id": base_id}
    kept = {column: value for column, value in terms.items() if value is not None}
    return " AND ".join(f"{column} = ?" for column in kept) or "1", list(kept.values())


def adopt(store: Store, base_id: str, model_name: str) -> None:
    """Rows from before base ids adopt the base whose file name they recorded."""
    with store.write() as db:
        db.execute(
            "UPDATE adapters SET base_id = ? WHERE base_id IS NULL AND base_model = ?", [base_id, model_name]
        )


def is_empty(store: Store) -> bool:
    return store.db.execute("SELECT 1 FROM adapters LIMIT 1").fetchone() is None


def rows(
    store: Store,
    base_id: str | None,
    *,
    name: str | None = None,
    status: str | None = None,
    enabled: bool | None = None,
) -> list[tuple]:
    """The matching rows (`COLUMNS`), ordered by name and version."""
    where, params = _where(
        base_id, name=name, status=status, enabled=None if enabled is None else int(enabled)
    )
    sql = f"SELECT {COLUMNS} FROM adapters WHERE {where} ORDER BY name, version"
    return store.db.execute(sql, params).fetchall()


def next_version(store: Store, name: str) -> int:
    """The next version number of `name`, over every base: (name, version) and its folder stay unique."""
    return 1 + (
        store.db.execute("SELECT MAX(version) FROM adapters WHERE name = ?", [name]).fetchone()[0] or 0
    )


def switch_in(store: Store, base_id: str | None, row: dict[str, Any]) -> None:
    """In one transaction: the name's previous version retires, its deployed one becomes previous (of
    `base_id`'s versions), and `row` (the columns of the new version, its own base_id among them) is
    inserted as deployed, enabled as the name already was."""
    name = row["name"]
    with store.write() as db:
        where, params = _where(base_id, name=name, status="previous")
        db.execute(f"UPDATE adapters SET status = 'retired' WHERE {where}", params)
        where, params = _where(base_id, name=name, status="deployed")
        db.execute(f"UPDATE adapters SET status = 'previous' WHERE {where}", params)
        where, params = _where(base_id, name=name)
        enabled = db.execute(
            f"SELECT COALESCE(MIN(enabled), 1) FROM adapters WHERE {where}", params
        ).fetchone()[0]
        values = {**row, "status": "deployed", "enabled": enabled}
        db.execute(
            f"INSERT INTO adapters ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            list(values.values()),
        )


def set_status(store: Store, changes: dict[int, str]) -> None:
    """Give each adapter id its new status, in one transaction."""
    with store.write() as db:
        for adapter_id, status in changes.items():
            db.execute("UPDATE adapters SET status = ? WHERE id = ?", [status, adapter_id])


def serving_or_previous(store: Store) -> list[tuple[int, str, int, str | None]]:
    """(id, name, version, sources JSON) of every deployed or previous version, of any base."""
    return store.db.execute(
        "SELECT id, name, version, sources FROM adapters WHERE status IN ('deployed', 'previous')"
    ).fetchall()


def set_enabled(store: Store, base_id: str | None, name: str, enabled: bool) -> None:
    where, params = _where(base_id, name=name)
    with store.write() as db:
        db.execute(f"UPDATE adapters SET enabled = ? WHERE {where}", [int(enabled), *params])


def delete(store: Store, base_id: str | None, name: str) -> None:
    where, params = _where(base_id, name=name)
    with store.write() as db:
        db.execute(f"DELETE FROM adapters WHERE {where}", params)
