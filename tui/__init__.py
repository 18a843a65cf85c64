"""The Textual chat app of uno-local: conversations, streaming answers, and feedback on them.

`tui.app.run_tui(app)` opens it on a core `uno_local.app.App`; the widgets are grouped by screen
region (sidebar, chat view, prompt, status bar, dialogs) with all styles in `uno.tcss`.
"""
