"""The HTTP surface: thin routes over the workspace service, and the middleware in front of them."""

from .middleware import AuthMiddleware, BodyLimitMiddleware, FailureLimiter
from .routes import routes

__all__ = ["AuthMiddleware", "BodyLimitMiddleware", "FailureLimiter", "routes"]
