"""One place for the errors a user may see.

Every `UnoError` carries a single sentence fit for the user: what is wrong and what to do.
The CLI prints it without a traceback and exits non-zero; the TUI shows it as a toast.
"""

from __future__ import annotations


class UnoError(Exception):
    """An expected failure with a message written for the user."""

    exit_code = 1


class ConfigError(UnoError):
    """`uno.toml` or a command-line setting is invalid."""


class ModelError(UnoError):
    """The chat model file is missing, unreadable or not a usable GGUF."""


class StoreError(UnoError):
    """The SQLite store cannot be opened or is in an unexpected state."""


class ImportFormatError(UnoError):
    """A log file to import is malformed; nothing was imported."""


class NotFoundError(UnoError):
    """A conversation, message, feedback row or adapter id does not exist."""


class BackendMissingError(UnoError):
    """An optional backend (torch, mlx, ...) is not installed."""


class AdapterError(UnoError):
    """An adapter file is corrupt, fails its checks, or cannot be loaded."""


class TrainingError(UnoError):
    """Training could not run or produced nothing usable."""


class NothingToLearnError(UnoError):
    """There is no new feedback to learn from."""


class RetrainLockedError(UnoError):
    """Another retrain is already running."""


class ScenarioError(UnoError):
    """An evaluation scenario file is malformed."""


class StoreFullError(StoreError):
    """The disk holding the database is full."""


class StoreBusyError(StoreError):
    """Another uno process holds the database's write lock for too long."""


class StoreReadOnlyError(StoreError):
    """The database or its folder cannot be written."""


class StoreCorruptError(StoreError):
    """The database file fails SQLite's integrity check."""


class OutputError(UnoError):
    """A file the user asked for (an export, a backup, batch answers) cannot be written."""


class ContextOverflowError(UnoError):
    """A message does not fit in the model's context window."""


class RequestError(UnoError):
    """A request to `uno serve` is malformed or not allowed; sent back as an OpenAI-shaped error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param


class ScheduleError(UnoError):
    """The overnight retrain could not be scheduled or unscheduled."""
