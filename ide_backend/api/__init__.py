"""The edge: thin routes over the workspace service, the websocket, authentication and the wire models."""

from .auth import Authenticator, AuthMiddleware, Credential, FailureLimiter
from .middleware import BodyLimitMiddleware
from .routes import routes

__all__ = ["AuthMiddleware", "Authenticator", "BodyLimitMiddleware", "Credential", "FailureLimiter", "routes"]
