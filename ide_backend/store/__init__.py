"""State that outlives the process: the async store over `databases` (SQLite file or PostgreSQL)."""

from .store import Store, WorkspaceRecord

__all__ = ["Store", "WorkspaceRecord"]
