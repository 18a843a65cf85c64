"""The Adapters view (F5): every version of every learned adapter, which one serves, its base model.
b rolls back, d disables, n enables, x deletes (asks first). The registry in -> rows; actions are the
registry's own (as `uno adapters`)."""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding

from tui.dialogs import ConfirmDialog
from tui.learning import TableScreen
from uno_local.registry import AdapterRecord


def serving(record: AdapterRecord) -> bool:
    return record.status == "deployed" and record.enabled


class AdaptersScreen(TableScreen):
    """The registry, newest version first within each adapter."""

    TITLE_TEXT = "Adapters: what it learned, and what is serving (*)"
    COLUMNS = ("", "adapter", "version", "kind", "cluster", "status", "enabled", "win rate", "base model")
    HELP = "b roll back · d disable · n enable · x delete (asks) · Esc back"
    BINDINGS = [
        Binding("b", "rollback", "Roll back: serve the previous version (or the base model)"),
        Binding("d", "enabled(False)", "Disable the adapter (its questions go to the base model)"),
        Binding("n", "enabled(True)", "Enable the adapter again"),
        Binding("x,delete", "delete", "Delete every version of the adapter (asks first)"),
        Binding("escape", "dismiss", "Back to the chat"),
    ]

    def __init__(self, core) -> None:
        super().__init__(core)
        self.records: dict[str, AdapterRecord] = {}

    def rows(self) -> list[tuple[str, tuple]]:
        records = sorted(self.core.registry.list(), key=lambda r: (r.name, -r.version))
        self.records = {r.key: r for r in records}
        return [
            (
                r.key,
                (
                    "*" if serving(r) else "",
                    r.name,
                    f"v{r.version}",
                    r.kind,
                    r.cluster or "-",
                    r.status,
                    "yes" if r.enabled else "no",
                    "-" if r.metrics.get("win_rate") is None else f"{r.metrics['win_rate']:.2f}",
                    Path(r.base_model).name.removesuffix(".gguf"),
                ),
            )
            for r in records
        ]

    def detail(self, key: str) -> str:
        r = self.records[key]
        lines = [
            f"{r.key}: {r.kind} for cluster {r.cluster or '-'}, {r.status}, {'enabled' if r.enabled else 'disabled'}",
            f"Trained on {len(r.sources)} answers with feedback (ids {', '.join(map(str, r.sources[:8]))}), "
            f"with {r.backend or '?'}",
            f"Base model: {r.base_model}",
        ]
        rates = r.metrics.get("win_rates")
        if rates:
            lines.append("Judged epochs' win rates: " + ", ".join(f"{e}: {v:.2f}" for e, v in rates.items()))
        return "\n".join(lines)

    def empty_text(self) -> str:
        return "No adapters yet: give feedback on some answers, then retrain (ctrl+r)."

    def current(self) -> AdapterRecord | None:
        key = self.current_key
        return self.records.get(key) if key else None

    def action_rollback(self) -> None:
        record = self.current()
        if record is None:
            return
        registry = self.core.registry
        if self.guard(registry.rollback, record.name):
            now = registry.deployed(record.name)
            self.notify(f"{record.name}: now serving {f'v{now.version}' if now else 'the base model'}.")
            self.reload()

    def action_enabled(self, enabled: bool) -> None:
        record = self.current()
        if record is not None and self.guard(self.core.registry.set_enabled, record.name, enabled):
            self.notify(f"{record.name}: {'enabled' if enabled else 'disabled'}.", title="uno")
            self.reload(keep=record.key)

    def action_delete(self) -> None:
        record = self.current()
        if record is None:
            return
        count = sum(r.name == record.name for r in self.records.values())

        def answered(yes: bool | None) -> None:
            if yes and self.guard(self.core.registry.delete, record.name):
                self.notify(f"{record.name}: deleted {count} version(s).", title="uno")
                self.reload()

        self.app.push_screen(
            ConfirmDialog(f"Delete every version of {record.name} ({count}), files included?"), answered
        )
