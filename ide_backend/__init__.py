"""ide-backend: one Docker container per workspace, driven by a browser IDE over JSON and websockets."""

from .app import create_app
from .settings import Settings
from .version import __version__

__all__ = ["Settings", "__version__", "create_app"]
