"""State that outlives the process: the async store over `databases` (SQLite file or PostgreSQL)."""

from .store import HeldTerminalRecord, ProjectWebhook, Store, WorkspaceRecord

__all__ = ["HeldTerminalRecord", "ProjectWebhook", "Store", "WorkspaceRecord"]
