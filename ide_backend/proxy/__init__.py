"""/ide/{projectId}/{workspaceId}/: the reverse proxy to a workspace's code-server."""

from .proxy import IDEProxy

__all__ = ["IDEProxy"]
