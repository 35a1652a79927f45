"""ide-backend's version, in a module of its own so that importing it never imports the app."""

__version__ = "0.1.0"
