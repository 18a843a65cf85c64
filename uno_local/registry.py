"""The adapter registry: versioned adapter folders in the user dir plus the `adapters` table.

Each version lives in `adapters/<name>/v<N>/` with `adapter.gguf` (what llama.cpp serves), `peft/`
(the trainer's weights), and `manifest.json` (resolved config, ids of the feedback rows used,
metrics, checksum). Deploy is atomic: stage, verify, rename, then one transaction flips the
statuses; the version it replaces stays as `previous` for rollback.

Adapters belong to their base: a registry opened for a base model (`base_id`, from
`backends.gguf_export.base_identity`) sees, serves and changes only that base's adapters. Rows from
before base identities adopt the base whose file name they recorded. Version numbers stay unique per
name across bases, so every version keeps its own folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from uno_local.errors import AdapterError, NotFoundError
from uno_local.store import Store, adapters, now_iso

GGUF_NAME = "adapter.gguf"


@dataclass
class AdapterRecord:
    id: int
    name: str
    version: int
    kind: str  # "expert", "critic"
    cluster: str | None
    status: str  # "deployed", "previous", "retired"
    enabled: bool
    path: Path  # the version folder
    checksum: str
    base_model: str
    backend: str | None
    sources: list[int]
    metrics: dict
    created_at: str

    @property
    def key(self) -> str:
        """The name the runtime knows this version by."""
        return f"{self.name}@v{self.version}"

    @property
    def gguf(self) -> Path:
        return self.path / GGUF_NAME


def _json(text: str | None, default):
    """A JSON column; a damaged value reads as `default` rather than failing every command."""
    try:
        value = json.loads(text) if text else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Registry:
    def __init__(
        self,
        store: Store,
        root: Path,
        base_id: str | Callable[[], str] | None = None,
        model_name: str | None = None,
    ) -> None:
        self.store = store
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # None: every base's adapters (maintenance and tests). A callable is asked on first need: reading
        # a GGUF's identity loads the gguf package, which `uno adapters` on an empty registry can skip.
        self._base_id = base_id
        self._model_name = model_name
        if isinstance(base_id, str):
            self._adopt()

    @property
    def base_id(self) -> str | None:
        if callable(self._base_id):
            self._base_id = self._base_id()
            self._adopt()
        return self._base_id

    def _adopt(self) -> None:
        if self._model_name:
            adapters.adopt(self.store, self._base_id, self._model_name)

    def _scope(self) -> str | None:
        """The base whose adapters a call sees: None for every base, or when there is nothing to scope."""
        if self._base_id is None or adapters.is_empty(self.store):
            return None
        return self.base_id

    def _rows(self, **match) -> list[AdapterRecord]:
        out = []
        for row in adapters.rows(self.store, self._scope(), **match):
            rec = AdapterRecord(*row)
            rec.enabled = bool(rec.enabled)
            rec.path = Path(rec.path)
            rec.sources = _json(rec.sources, [])
            rec.metrics = _json(rec.metrics, {})
            out.append(rec)
        return out

    def problem(self, record: AdapterRecord) -> str | None:
        """Why `record` cannot serve (missing, corrupt or not a GGUF file), or None when it can."""
        try:
            path = self.verify_file(record)
            with path.open("rb") as handle:
                if handle.read(4) != b"GGUF":
                    raise AdapterError(f"Adapter {record.key} is not a GGUF file; retrain.")
        except AdapterError as exc:
            return str(exc)
        except OSError as exc:
            return f"Adapter {record.key} cannot be read ({exc.strerror}); retrain."
        return None

    def serving(self) -> list[AdapterRecord]:
        """The active versions whose files pass their checks: what the chat really serves."""
        return [rec for rec in self.active() if self.problem(rec) is None]

    def list(self) -> list[AdapterRecord]:
        return self._rows()

    def active(self) -> list[AdapterRecord]:
        """The deployed, enabled version of every adapter name: what the chat serves."""
        return self._rows(status="deployed", enabled=True)

    def deployed(self, name: str) -> AdapterRecord | None:
        rows = self._rows(name=name, status="deployed")
        return rows[0] if rows else None

    def versions(self, name: str) -> list[AdapterRecord]:
        rows = self._rows(name=name)
        if not rows:
            raise NotFoundError(f"No adapter named {name!r}; `uno adapters` lists them.")
        return rows

    def deploy(
        self,
        *,
        name: str,
        kind: str,
        gguf_file: Path,
        peft_dir: Path | None,
        base_model: str,
        sources: list[int],
        metrics: dict,
        config: dict,
        cluster: str | None = None,
        backend: str | None = None,
        verify: Callable[[Path], None] | None = None,
    ) -> AdapterRecord:
        """Stage, verify (checksum, then `verify(gguf)` e.g. the parity check), move in, switch.
        The first deploy of a process (a retrain) backs the database up before it switches."""
        staging = self.root / f".staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir(mode=0o700)
        try:
            shutil.copy2(gguf_file, staging / GGUF_NAME)
            if peft_dir is not None:
                shutil.copytree(peft_dir, staging / "peft")
            checksum = sha256_file(staging / GGUF_NAME)
            if verify is not None:
                verify(staging / GGUF_NAME)
            if sha256_file(staging / GGUF_NAME) != checksum:
                raise AdapterError(f"The adapter file for {name} changed while it was checked; retrain.")
            version = adapters.next_version(self.store, name)
            manifest = {
                "name": name,
                "version": version,
                "kind": kind,
                "cluster": cluster,
                "base_model": base_model,
                "base_id": self.base_id,
                "backend": backend,
                "checksum": checksum,
                "sources": sources,
                "metrics": metrics,
                "config": config,
                "created_at": now_iso(),
            }
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            final = self.root / name / f"v{version}"
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.store.backup_once("retrain")
        adapters.switch_in(
            self.store,
            self._scope(),
            {
                "name": name,
                "version": version,
                "kind": kind,
                "cluster": cluster,
                "path": str(final),
                "checksum": checksum,
                "base_model": base_model,
                "backend": backend,
                "sources": json.dumps(sources),
                "metrics": json.dumps(metrics, default=str),
                "created_at": manifest["created_at"],
                "base_id": self.base_id,
            },
        )
        return self.deployed(name)

    def rollback(self, name: str) -> AdapterRecord | None:
        """Retire the deployed version and bring back the previous one (None: back to the base)."""
        current = self.deployed(name)
        if current is None:
            raise NotFoundError(
                f"Adapter {name!r} has no deployed version to roll back; `uno adapters` lists them."
            )
        previous = self._rows(name=name, status="previous")
        adapters.set_status(
            self.store, {current.id: "retired", **({previous[-1].id: "deployed"} if previous else {})}
        )
        return self.deployed(name)

    def retire_forgotten(self, current: set[int]) -> list[str]:
        """Retire every deployed or previous version, of any base, trained on a log outside `current`
        (its feedback or its conversation was deleted since): forgetting reaches what serves and what a
        rollback could bring back. Returns the retired keys."""
        rows = adapters.serving_or_previous(self.store)
        stale = {row[0]: f"{row[1]}@v{row[2]}" for row in rows if set(_json(row[3], [])) - current}
        if stale:
            adapters.set_status(self.store, dict.fromkeys(stale, "retired"))
        return list(stale.values())

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.versions(name)
        adapters.set_enabled(self.store, self._scope(), name, enabled)

    def delete(self, name: str) -> int:
        """Remove every version of `name`, files included; returns how many versions went."""
        rows = self.versions(name)
        adapters.delete(self.store, self._scope(), name)
        for row in rows:  # only this base's versions: another base may keep the same name
            shutil.rmtree(row.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / name).rmdir()  # when no other base has versions left there
        return len(rows)

    def verify_file(self, record: AdapterRecord) -> Path:
        """The GGUF path after checking it exists and matches its checksum."""
        if not record.gguf.is_file():
            raise AdapterError(
                f"Adapter {record.key} is missing its file {record.gguf}; run `uno adapters rollback {record.name}`."
            )
        if sha256_file(record.gguf) != record.checksum:
            raise AdapterError(
                f"Adapter {record.key} is corrupt (checksum mismatch); run `uno adapters rollback {record.name}` "
                "or retrain."
            )
        return record.gguf

    def clean_staging(self) -> None:
        """Remove folders left by a deploy that was interrupted."""
        for folder in self.root.glob(".staging-*"):
            shutil.rmtree(folder, ignore_errors=True)
