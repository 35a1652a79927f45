"""ide-backend: one Docker container per workspace, driven by a browser IDE over JSON and websockets."""

__version__ = "0.1.0"

# Imported after __version__, which the app's modules read.
from .app import create_app
from .settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
