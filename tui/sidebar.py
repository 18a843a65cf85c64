"""The sidebar: a search box over the conversation list (titles and message text) and the list itself.
`Conversation` records in -> `ConversationChosen` / `ConversationAction` / `SearchChanged` out.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, ListItem, ListView

from tui.messages import ConversationAction, ConversationChosen, SearchChanged
from uno_local.store import Conversation


class ConversationItem(ListItem):
    """One conversation in the list."""

    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Label(conversation.title, markup=False), id=f"conv-{conversation.id}")
        self.conversation = conversation


class ConversationList(ListView):
    """Conversations, newest first; keys act on the highlighted one."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Open the highlighted conversation"),
        Binding("n", "conversation('new')", "New conversation"),
        Binding("r", "conversation('rename')", "Rename the highlighted conversation"),
        Binding("d,delete", "conversation('delete')", "Delete the highlighted conversation (asks first)"),
    ]

    @property
    def highlighted_conversation(self) -> Conversation | None:
        item = self.highlighted_child
        return item.conversation if isinstance(item, ConversationItem) else None

    def action_conversation(self, kind: str) -> None:
        conversation = self.highlighted_conversation
        if conversation is None and kind != "new":
            self.notify("No conversation is highlighted.", severity="warning")
            return
        self.post_message(ConversationAction(conversation.id if conversation else None, kind))

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ConversationItem):
            self.post_message(ConversationChosen(event.item.conversation.id))


class Sidebar(Vertical):
    """Search box, list of conversations and a count."""

    def __init__(self, *, cursor_blink: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        yield Label("Conversations", id="sidebar-title")
        search = Input(placeholder="Search (ctrl+f)", id="search")
        search.cursor_blink = self.cursor_blink
        yield search
        yield ConversationList(id="conversations")
        yield Label("", id="sidebar-count", markup=False)

    async def show(self, conversations: list[Conversation], current: int | None) -> None:
        """Fill the list and highlight the open conversation."""
        listing = self.query_one(ConversationList)
        await listing.clear()
        await listing.extend(ConversationItem(c) for c in conversations)
        ids = [c.id for c in conversations]
        listing.index = ids.index(current) if current in ids else (0 if ids else None)
        for item in listing.query(ConversationItem):
            item.set_class(item.conversation.id == current, "-current")
        query = self.query_one("#search", Input).value.strip()
        noun = "conversation" if len(ids) == 1 else "conversations"
        count = f"{len(ids)} {noun}" + (f" found for “{query}”" if query else "")
        self.query_one("#sidebar-count", Label).update(count)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "search":
            event.stop()
            self.post_message(SearchChanged(event.value.strip()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search":
            event.stop()
            self.query_one(ConversationList).focus()
