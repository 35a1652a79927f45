"""Who is asking, and what they may touch: the one place credentials are checked.

In the shape of Starlette's AuthenticationMiddleware + AuthenticationBackend: an Authenticator turns a connection
(HTTP request or websocket) into a Credential, or raises Unauthorized / TooManyAttempts; AuthMiddleware runs it in
front of /api/ and leaves the credential in the scope; ide_backend.api.answers.deny() refuses what fails. The
/ide/ proxy calls the same Authenticator for its own routes.

A credential is presented as `Authorization: Bearer <token>`, as `?token=<token>` (for websockets and links,
where a browser cannot set a header), or, below /ide/{projectId}/{workspaceId}/ only, as the IDE session cookie
that opening the IDE with the token once sets. Wrong tokens are counted per client address (FailureLimiter); past
the limit every attempt from that address gets 429 for the rest of the minute, the right token included.

A Credential carries what it may touch: every route and websocket message asks `credential.require(ref, action)`
before it acts on a workspace. Today the API token may touch every workspace; an IDE session cookie only the
workspace it was issued for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Forbidden, TooManyAttempts, Unauthorized
from ..service.domain import WorkspaceRef
from .answers import deny

Action = Literal["read", "write"]
"""What a request does to a workspace: `read` looks (status, listings, attach, subscribe), `write` changes."""

COOKIE_NAME = "ide_session"
TOKEN_PARAM = "token"  # noqa: S105 - the name of the query parameter, not a secret
SCOPE_KEY = "ide_backend.credential"


@dataclass(frozen=True)
class Credential:
    """An authenticated caller: how it proved itself, and the workspaces it may touch (None: every one)."""

    source: Literal["header", "query", "cookie"]
    admin: bool
    workspaces: frozenset[WorkspaceRef] | None = None

    def may(self, ref: WorkspaceRef, action: Action) -> bool:
        return self.workspaces is None or ref in self.workspaces

    def require(self, ref: WorkspaceRef, action: Action) -> None:
        """Raise Forbidden unless this credential may do `action` to the workspace."""
        if not self.may(ref, action):
            raise Forbidden(f"This credential may not {action} workspace {ref}")

    def require_admin(self, doing: str) -> None:
        if not self.admin:
            raise Forbidden(f"Only the operator's token may {doing}")


class FailureLimiter:
    """Counts failed token checks per client address in a sliding minute, so a token cannot be brute-forced."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        cutoff = time.monotonic() - self.window
        while failures and failures[0] < cutoff:
            failures.popleft()
        return failures

    def blocked_for(self, client: str) -> float:
        """Seconds until this client may try again; 0 when it may try now."""
        failures = self._recent(client)
        if len(failures) < self.limit:
            if not failures:
                self._failures.pop(client, None)
            return 0.0
        return max(0.0, failures[0] + self.window - time.monotonic())

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())

    def count(self, client: str) -> int:
        """Failures of this client within the window."""
        return len(self._recent(client))

    def clear(self) -> None:
        self._failures.clear()


def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "unknown"


def bearer(value: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header value, or None."""
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


class Authenticator:
    """Checks the API token (header or query) and IDE session cookies; counts failures."""

    def __init__(self, token: str, limiter: FailureLimiter, *, session_ttl: float) -> None:
        if not token:
            raise ValueError("the authenticator needs the API token")
        self._token = token.encode()
        # The cookie key is derived from the token: rotating the token ends every IDE session.
        self._cookie_key = hmac.new(self._token, b"ide-backend proxy cookie v1", hashlib.sha256).digest()
        self.limiter = limiter
        self.session_ttl = session_ttl

    def is_token(self, presented: str) -> bool:
        """Constant-time comparison, so the token cannot be guessed byte by byte from timings."""
        return hmac.compare_digest(presented.encode(), self._token)

    def authenticate(self, conn: HTTPConnection, *, workspace: WorkspaceRef | None = None) -> Credential:
        """The connection's credential. The IDE cookie counts only for the workspace whose /ide/ path it is on, and
        only when no token is presented; a valid session is no guess, so it works while its address is throttled."""
        presented = bearer(conn.headers.get("authorization"))
        source: Literal["header", "query"] = "header"
        if presented is None and TOKEN_PARAM in conn.query_params:
            presented, source = conn.query_params[TOKEN_PARAM], "query"
        if presented is None and workspace is not None:
            if any(self.session_valid(value, workspace) for value in _cookies(conn, COOKIE_NAME)):
                return Credential(source="cookie", admin=False, workspaces=frozenset({workspace}))
        client = client_address(conn)
        if wait := self.limiter.blocked_for(client):
            raise TooManyAttempts(wait)
        if presented is None:
            raise Unauthorized(
                "The API token is missing: send it as 'Authorization: Bearer <token>' (or ?token=<token> on a "
                "websocket or a link); the server prints it at start-up, or set IDE_API_TOKEN"
            )
        if self.is_token(presented):
            return Credential(source=source, admin=True)
        self.limiter.failed(client)
        raise Unauthorized(
            "The API token is wrong: send the one the server printed at start-up (or set IDE_API_TOKEN), as "
            "'Authorization: Bearer <token>' or ?token=<token>"
        )

    # -- the IDE session cookie ---------------------------------------------------------------------------------

    def _sign(self, ref: WorkspaceRef, expires: int) -> str:
        message = f"{ref.project_id}\0{ref.workspace_id}\0{expires}".encode()
        digest = hmac.new(self._cookie_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue_session(self, ref: WorkspaceRef, now: float | None = None) -> str:
        """An IDE session cookie's value for one workspace: `<expiry>.<HMAC(project, workspace, expiry)>`; it holds
        no part of the token."""
        expires = int((time.time() if now is None else now) + self.session_ttl)
        return f"{expires}.{self._sign(ref, expires)}"

    def session_valid(self, value: str, ref: WorkspaceRef, now: float | None = None) -> bool:
        expires_raw, _, signature = value.partition(".")
        if not expires_raw.isdigit() or not signature:
            return False
        expires = int(expires_raw)
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(signature.encode(), self._sign(ref, expires).encode())


def _cookies(conn: HTTPConnection, name: str) -> list[str]:
    """Every value of the cookie `name` (a browser may send more than one)."""
    values = []
    for key, header in conn.headers.items():
        if key != "cookie":
            continue
        for part in header.split(";"):
            cookie, _, value = part.strip().partition("=")
            if cookie == name:
                values.append(value)
    return values


def credential(conn: HTTPConnection) -> Credential:
    """The credential AuthMiddleware found for this request or websocket."""
    found = conn.scope.get(SCOPE_KEY)
    if not isinstance(found, Credential):
        raise Unauthorized("This endpoint needs a credential and none was checked")  # a route outside /api/
    return found


class AuthMiddleware:
    """Authenticates every /api/ request and websocket; the credential goes into the scope, failures are denied."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, prefix: str = "/api/") -> None:
        self.app = app
        self.authenticator = authenticator
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"].startswith(self.prefix):
            try:
                scope[SCOPE_KEY] = self.authenticator.authenticate(HTTPConnection(scope))
            except (Unauthorized, TooManyAttempts) as exc:
                await deny(scope, receive, send, exc)
                return
        await self.app(scope, receive, send)
