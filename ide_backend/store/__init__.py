"""State that outlives the process: the async store over `databases` (SQLite file or PostgreSQL)."""

from .store import ProjectWebhook, Store, WorkspaceRecord

__all__ = ["ProjectWebhook", "Store", "WorkspaceRecord"]
