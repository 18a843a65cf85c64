"""`uno serve`: the UNO router behind an OpenAI-compatible HTTP API (protocol, conversations, server)."""
