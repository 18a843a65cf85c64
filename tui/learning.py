"""What the app learned, seen from the chat: the shared frame of the learning views (a table, a detail
pane, one-key actions) and "why this answer". Core functions read the data; there is no SQL here.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label, Static

from uno_local.app import App
from uno_local.errors import UnoError
from uno_local.store.learning import load_clusters, win_rate_text


def explain_answer(core: App, message_id: int) -> str:
    """What `uno explain MESSAGE_ID` says: the route, why it was taken, and the cluster's rules."""
    try:
        message = core.store.get_message(message_id)
    except UnoError as exc:
        return str(exc)
    head = f"Answer #{message_id}: route {message.route or 'base'}"
    head += f", adapter {message.adapter}" if message.adapter else ""
    head += f", cluster {message.cluster}" if message.cluster else ""
    lines = [head, message.route_reason or "It was answered before routing existed, by the base model."]
    if message.cluster is not None:
        row = next((r for r in load_clusters(core.store) if str(r.label) == str(message.cluster)), None)
        if row is None:
            lines.append("That cluster no longer exists (a later retrain replaced it).")
        else:
            gap = "-" if row.gap is None else f"{row.gap:.2f}"
            win = win_rate_text(row.win_rate, row.route)
            lines.append(
                f"Cluster {row.label}: {len(row.members)} logs, gap {gap}, route {row.route}, win rate {win}."
            )
            if row.decision:
                lines.append(row.decision)
            lines += [f"  - {rule}" for rule in row.effective_rules]
    lines.append(f"The same from the shell: uno explain {message_id}")
    return "\n".join(lines)


class WhyScreen(ModalScreen[None]):
    """Why this answer: the explanation of the selected answer, over the chat."""

    BINDINGS = [Binding("escape,q,w", "dismiss", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="why-dialog"):
            yield Label("Why this answer", classes="dialog-title")
            with VerticalScroll(id="why-scroll"):
                yield Static(self.text, id="why-text", markup=False)
            yield Label("Esc closes", classes="dialog-help")


class TableScreen(Screen[object]):
    """A learning view: a title, a table of rows (one key each), the highlighted row's details and
    the keys. Subclasses fill `rows()` and `detail(key)`, and act through their bindings."""

    TITLE_TEXT = ""
    COLUMNS: tuple[str, ...] = ()
    HELP = ""

    def __init__(self, core: App) -> None:
        super().__init__()
        self.core = core

    def compose(self) -> ComposeResult:
        with Vertical(classes="view"):
            yield Label(self.TITLE_TEXT, classes="view-title")
            yield from self.compose_top()
            table = DataTable(cursor_type="row", zebra_stripes=True, classes="view-table")
            table.add_columns(*self.COLUMNS)
            yield table
            with VerticalScroll(classes="view-detail-box"):
                yield Static("", classes="view-detail", markup=False)
            yield Label(self.HELP, classes="view-help", markup=False)

    def compose_top(self) -> ComposeResult:
        yield from ()

    @property
    def table(self) -> DataTable:
        return self.query_one(DataTable)

    def on_mount(self) -> None:
        self.reload()
        self.table.focus()

    def rows(self) -> list[tuple[str, tuple]]:
        """(key, cells) per row, in display order."""
        raise NotImplementedError

    def detail(self, key: str) -> str:
        return ""

    def reload(self, keep: str | None = None) -> None:
        """Refill the table from the store; the cursor stays on `keep` (else the current row)."""
        table = self.table
        current = keep if keep is not None else self.current_key
        try:
            rows = self.rows()
        except UnoError as exc:
            self.notify(str(exc), severity="error", title="uno")
            rows = []
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        keys = [key for key, _ in rows]
        if current in keys:
            table.move_cursor(row=keys.index(current))
        self.show_detail()

    @property
    def current_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def show_detail(self) -> None:
        key = self.current_key
        text = self.detail(key) if key is not None else self.empty_text()
        self.query_one(".view-detail", Static).update(text)

    def empty_text(self) -> str:
        return "Nothing here yet."

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table takes Enter itself; a view that acts on Enter does it in `chosen`.
        event.stop()
        self.chosen()

    def chosen(self) -> None:
        """Enter on a row."""

    def guard(self, action, *args, **kwargs) -> bool:
        """Run a core call; an expected failure becomes an error toast (and False)."""
        try:
            action(*args, **kwargs)
        except UnoError as exc:
            self.notify(str(exc), severity="error", title="uno")
            return False
        return True
