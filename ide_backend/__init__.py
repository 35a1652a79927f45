"""ide-backend: one Docker container per workspace, driven by a browser IDE over JSON and websockets.

The server's parts load when first asked for, so `ide_backend.client` (the SDK) does not pull in the server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .app import create_app
    from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(f"module 'ide_backend' has no attribute {name!r}")
