"""The sidebar: a search box over the conversation list (titles, messages, comments and corrections)
and the list itself. `Conversation` records (and search hits) in -> `ConversationChosen` /
`ConversationAction` / `SearchChanged` out.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, ListItem, ListView

from tui.messages import ConversationAction, ConversationChosen, SearchChanged
from uno_local.store import Conversation, Message

SNIPPET = 60  # characters of context shown under a search hit


@dataclass(frozen=True)
class SearchHit:
    """Where a search matched inside a conversation: the message to jump to and a line around it."""

    message_id: int | None
    snippet: str


def texts_of(message: Message) -> list[str]:
    """Everything searchable on a message: its text, and a comment and correction on it."""
    feedback = message.feedback
    extra = [feedback.correction or "", feedback.comment or ""] if feedback else []
    return [message.content, *extra]


def snippet_around(text: str, word: str, width: int = SNIPPET) -> str:
    """One line of `text` around the first `word` (case-insensitive), with … where it is cut."""
    flat = " ".join(text.split())
    at = flat.lower().find(word.lower())
    start = max(0, at - 12) if at >= 0 else 0  # a little context before the word; the word shows
    piece = flat[start : start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


def search_hit(messages: list[Message], query: str) -> SearchHit:
    """The first message holding every word of `query` (else the most of them), with a snippet.
    Words match in any order and case; a hit only in the title has no message."""
    words = query.lower().split()
    best, best_count = None, 0
    for message in messages:
        for text in texts_of(message):
            count = sum(word in text.lower() for word in words)
            if count > best_count:
                best, best_count = (message, text), count
        if best_count == len(words):
            break
    if best is None:
        return SearchHit(None, "(in the title)")
    message, text = best
    first = next(word for word in words if word in text.lower())
    return SearchHit(message.id, snippet_around(text, first))


class ConversationItem(ListItem):
    """One conversation in the list; with a search hit, the snippet below its title."""

    def __init__(self, conversation: Conversation, hit: SearchHit | None = None) -> None:
        labels = [Label(conversation.title, markup=False, classes="conv-title")]
        if hit is not None:
            labels.append(Label(hit.snippet, markup=False, classes="conv-snippet"))
        super().__init__(*labels, id=f"conv-{conversation.id}")
        self.conversation = conversation
        self.hit = hit


class ConversationList(ListView):
    """Conversations, newest first; keys act on the highlighted one."""

    LETTERS = {"n", "r", "d"}  # the printable keys that act here; the app types any other into the prompt
    BINDINGS = [
        Binding("enter", "select_cursor", "Open the highlighted conversation (at the search hit)"),
        Binding("home", "edge(0)", "First conversation"),
        Binding("end", "edge(-1)", "Last conversation"),
        Binding("n", "conversation('new')", "New conversation"),
        Binding("r", "conversation('rename')", "Rename the highlighted conversation"),
        Binding("d,delete", "conversation('delete')", "Delete the highlighted conversation (asks first)"),
    ]

    @property
    def highlighted_conversation(self) -> Conversation | None:
        item = self.highlighted_child
        return item.conversation if isinstance(item, ConversationItem) else None

    def action_edge(self, index: int) -> None:
        count = len(self.children)
        if count:
            self.index = index % count

    def action_conversation(self, kind: str) -> None:
        conversation = self.highlighted_conversation
        if conversation is None and kind != "new":
            self.notify("No conversation is highlighted.", severity="warning")
            return
        self.post_message(ConversationAction(conversation.id if conversation else None, kind))

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        if isinstance(event.item, ConversationItem):
            hit = event.item.hit
            self.post_message(ConversationChosen(event.item.conversation.id, hit.message_id if hit else None))


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

    async def show(
        self,
        conversations: list[Conversation],
        current: int | None,
        *,
        hits: dict[int, SearchHit] | None = None,
        highlight: int | None = None,
        row: int | None = None,
    ) -> None:
        """Fill the list; the cursor goes to `highlight` (an id), else `row`, else the open conversation."""
        hits = hits or {}
        listing = self.query_one(ConversationList)
        await listing.clear()
        await listing.extend(ConversationItem(c, hits.get(c.id)) for c in conversations)
        ids = [c.id for c in conversations]
        if highlight in ids:
            listing.index = ids.index(highlight)
        elif row is not None and ids:
            listing.index = min(row, len(ids) - 1)
        else:
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
