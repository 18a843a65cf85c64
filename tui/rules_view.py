"""The Rules view (F4): each learned cluster with its rules, gap, route, judged epochs' win rates,
adapter version and a few example questions. e edits the rules, v vetoes or includes it again.
The cluster table and the registry in -> rows; changes through `update_cluster` (as `uno rules`).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, TextArea

from tui.learning import TableScreen
from uno_local.errors import UnoError
from uno_local.store import Store
from uno_local.store.learning import ClusterRow, load_clusters, update_cluster, win_rate_text

EXAMPLES = 3


def question_of(store: Store, answer_id: int) -> str:
    """The user's question an answer replied to ('' when it is gone)."""
    try:
        answer = store.get_message(answer_id)
    except UnoError:
        return ""
    earlier = [m for m in store.messages(answer.conversation_id) if m.id < answer_id and m.role == "user"]
    return earlier[-1].content if earlier else ""


def rules_from(text: str) -> list[str]:
    """One rule per non-empty line; list bullets are dropped."""
    return [line.strip(" -*\t") for line in text.splitlines() if line.strip(" -*\t")]


class RulesEditor(ModalScreen[list[str] | None]):
    """A cluster's rules, one per line; saving an empty list is refused (veto the cluster instead)."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save the rules"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, label: int, rules: list[str]) -> None:
        super().__init__()
        self.label = label
        self.rules = rules

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="rules-dialog"):
            yield Label(f"Rules of cluster {self.label}, one per line", classes="dialog-title")
            yield TextArea("\n".join(self.rules), id="rules-editor", soft_wrap=True)
            yield Label("ctrl+s saves (used from the next retrain) · Esc cancels", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def action_save(self) -> None:
        rules = rules_from(self.query_one(TextArea).text)
        if not rules:
            self.notify("A cluster needs at least one rule; v vetoes it instead.", severity="warning")
            return
        self.dismiss(rules)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RulesScreen(TableScreen):
    """The clusters the last retrain learned."""

    TITLE_TEXT = "What it learned: clusters and their rules"
    COLUMNS = ("cluster", "logs", "gap", "route", "win rate", "adapter", "")
    HELP = "e edit the rules · v veto / include again · Esc back"
    BINDINGS = [
        Binding("e", "edit", "Edit the cluster's rules"),
        Binding("v", "veto", "Veto the cluster (base model, no training) or include it again"),
        Binding("escape", "dismiss", "Back to the chat"),
    ]

    def __init__(self, core) -> None:
        super().__init__(core)
        self.clusters: dict[str, ClusterRow] = {}

    def adapter_text(self, name: str | None) -> str:
        if not name:
            return "-"
        record = self.core.registry.deployed(name)
        return f"{name} v{record.version}" if record else name

    def rows(self) -> list[tuple[str, tuple]]:
        clusters = load_clusters(self.core.store)
        self.clusters = {str(row.label): row for row in clusters}
        return [
            (
                str(row.label),
                (
                    f"c{row.label}",
                    str(len(row.members)),
                    "-" if row.gap is None else f"{row.gap:.2f}" + (" high" if row.high_gap else ""),
                    row.route,
                    win_rate_text(row.win_rate, row.route),
                    self.adapter_text(row.expert or row.critic),
                    "vetoed" if row.vetoed else "",
                ),
            )
            for row in clusters
        ]

    def detail(self, key: str) -> str:
        row = self.clusters[key]
        edited = " (your edit)" if row.user_rules is not None else ""
        lines = [f"Rules{edited}:", *[f"  - {rule}" for rule in row.effective_rules]]
        if row.decision:
            lines.append(f"Decision: {row.decision}")
        record = self.core.registry.deployed(row.expert) if row.expert else None
        win_rates = record.metrics.get("win_rates") if record else None
        if win_rates:
            judged = ", ".join(f"epoch {epoch}: {rate:.2f}" for epoch, rate in win_rates.items())
            lines.append(f"Judged epochs' win rates: {judged}")
        questions = [q for q in (question_of(self.core.store, m) for m in row.members[:EXAMPLES]) if q]
        if questions:
            lines += ["Example questions:", *[f"  · {q}" for q in questions]]
        if row.vetoed:
            lines.append("Vetoed: not trained, and its questions go to the base model (v includes it again).")
        return "\n".join(lines)

    def empty_text(self) -> str:
        return "No clusters yet: give feedback on some answers, then retrain (ctrl+r)."

    def action_edit(self) -> None:
        key = self.current_key
        if key is None:
            return
        row = self.clusters[key]

        def saved(rules: list[str] | None) -> None:
            if rules is not None and self.guard(update_cluster, self.core.store, row.label, user_rules=rules):
                self.notify(f"Cluster {row.label}: {len(rules)} rules saved; the next retrain uses them.")
                self.reload(keep=key)

        self.app.push_screen(RulesEditor(row.label, row.effective_rules), saved)

    def action_veto(self) -> None:
        key = self.current_key
        if key is None:
            return
        row = self.clusters[key]
        if self.guard(update_cluster, self.core.store, row.label, vetoed=int(not row.vetoed)):
            done = "included again" if row.vetoed else "vetoed; its questions go to the base model"
            self.notify(f"Cluster {row.label}: {done}.", title="uno")
            self.reload(keep=key)
