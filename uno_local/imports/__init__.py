"""Logs from other tools -> our log records: detect the format, read it whole, or refuse it whole.

Formats: `jsonl` (ours, see uno_local/logs.py), `llm` (simonw/llm's logs.db), `openwebui` (Open WebUI's
chat export) and `openwebui-feedback` (its feedback export). Importing is `logs.import_records`.
"""

from __future__ import annotations

import json
from pathlib import Path

from uno_local.errors import ImportFormatError
from uno_local.logs import LogRecord, parse_log_lines

FORMATS = ("auto", "jsonl", "llm", "openwebui", "openwebui-feedback")


def detect_format(path: Path, data: bytes) -> str:
    """The format of a file from its first bytes (and, for JSON, its top-level shape)."""
    from uno_local.imports import openwebui
    from uno_local.imports.llm_logs import SQLITE_MAGIC

    if data.startswith(SQLITE_MAGIC):
        return "llm"
    if data.lstrip()[:1] == b"[":
        try:
            whole = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return "jsonl"
        if openwebui.is_feedback_export(whole):
            return "openwebui-feedback"
        if openwebui.is_chat_export(whole):
            return "openwebui"
    return "jsonl"


def read_records(path: Path, fmt: str = "auto") -> tuple[str, list[LogRecord]]:
    """(format, records) for FILE, every record checked; ImportFormatError names the first bad one."""
    from uno_local.imports import openwebui
    from uno_local.imports.llm_logs import read_llm_logs

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"Cannot read {path} ({exc.strerror}); check the path.") from exc
    if fmt == "auto":
        fmt = detect_format(path, data)
    if fmt == "jsonl":
        return fmt, parse_log_lines(data, source=str(path))
    if fmt == "llm":
        return fmt, read_llm_logs(path)
    try:
        whole = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path} is not valid JSON ({exc}); nothing was imported.") from exc
    if fmt == "openwebui":
        return fmt, openwebui.read_chat_export(whole, str(path))
    if fmt == "openwebui-feedback":
        return fmt, openwebui.read_feedback_export(whole, str(path))
    raise ImportFormatError(f"Unknown import format {fmt!r}; use one of {', '.join(FORMATS)}.")
