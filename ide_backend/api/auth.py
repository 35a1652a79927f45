"""Who is asking, and what they may touch: the one place credentials are checked.

In the shape of Starlette's AuthenticationMiddleware + AuthenticationBackend: an Authenticator turns a connection
(HTTP request or websocket) into a Credential, or raises Unauthorized / TooManyAttempts; AuthMiddleware runs it in
front of /api/ and leaves the credential in the scope; ide_backend.api.answers.deny() refuses what fails. The
/ide/ proxy calls the same Authenticator for its own routes.

A credential is presented as `Authorization: Bearer <token>`, as `?token=<token>` (for websockets and links,
where a browser cannot set a header), or, below /ide/{projectId}/{workspaceId}/ only, as the IDE session cookie
that opening the IDE with the token once sets. Wrong tokens are counted per client address (FailureLimiter); past
the limit every attempt from that address gets 429 for the rest of the minute, the right token included.

The operator's token (IDE_API_TOKEN) is the admin credential: every workspace, minting and revoking tokens, the
statistics. A scoped token (ide_backend.api.tokens, minted by POST /api/v1/tokens) covers one project or one
workspace, for some actions, until it expires or is revoked. An IDE session cookie covers the workspace it was set
for, with the actions of the token that opened it.

A Credential carries what it may touch: every route and websocket message asks `credential.require(ref, action)`
before it acts on a workspace.
"""

from __future__ import annotations

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
from .tokens import ACTIONS, Action, Claims, Revocations, SessionKind, TokenSigner, looks_like_jwt

COOKIE_NAME = "ide_session"
PREVIEW_COOKIE_NAME = "ide_preview"  # a preview's session (/preview/{p}/{w}/{port}/): never the IDE's
TOKEN_PARAM = "token"  # noqa: S105 - the name of the query parameter, not a secret
SCOPE_KEY = "ide_backend.credential"


@dataclass(frozen=True)
class Credential:
    """An authenticated caller: how it proved itself and what it may touch. `claims` is None for the operator's
    token (every workspace, every action, administration)."""

    source: Literal["header", "query", "cookie"]
    claims: Claims | None = None

    @property
    def admin(self) -> bool:
        return self.claims is None

    def covers(self, ref: WorkspaceRef) -> bool:
        """Whether the workspace is within this credential's reach at all."""
        claims = self.claims
        if claims is None:
            return True
        return claims.project_id == ref.project_id and claims.workspace_id in (None, ref.workspace_id)

    def may(self, ref: WorkspaceRef, action: Action) -> bool:
        if self.claims is None:
            return True
        return self.covers(ref) and (action in self.claims.actions or "write" in self.claims.actions)

    def require(self, ref: WorkspaceRef, action: Action) -> None:
        """Raise Forbidden unless this credential may do `action` to the workspace."""
        if not self.may(ref, action):
            if self.covers(ref):
                raise Forbidden(f"This token may only {', '.join(sorted(self.claims.actions if self.claims else ()))}")
            raise Forbidden(f"This token is not valid for workspace {ref}")

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
    """Checks the operator's token, scoped tokens and IDE session cookies; counts failures; knows revocations."""

    def __init__(
        self, token: str, limiter: FailureLimiter, *, session_ttl: float, signer: TokenSigner | None = None
    ) -> None:
        if not token:
            raise ValueError("the authenticator needs the API token")
        self._token = token.encode()
        self.signer = signer or TokenSigner(hmac.new(self._token, b"ide-backend signer", "sha256").digest(), token)
        self.limiter = limiter
        self.session_ttl = session_ttl
        self.revocations = Revocations()

    def is_token(self, presented: str) -> bool:
        """Whether this is the operator's token (constant-time, so it cannot be guessed from timings)."""
        return _same(presented, self._token)

    def require_metrics(self, conn: HTTPConnection, metrics_token: str) -> None:
        """/metrics: the metrics token (good for nothing else), or the operator's token; else 401/403."""
        presented = bearer(conn.headers.get("authorization"))
        if metrics_token and presented is not None and _same(presented, metrics_token.encode()):
            return
        self.authenticate(conn).require_admin("read the metrics (or send IDE_METRICS_TOKEN)")

    def authenticate(
        self, conn: HTTPConnection, *, workspace: WorkspaceRef | None = None, kind: SessionKind = "ide"
    ) -> Credential:
        """The connection's credential. A session cookie counts only for the workspace whose /ide/ (or, `kind`
        "preview", /preview/) path it is on, and only when no token is presented; a valid session is no guess, so it
        works while its address is throttled."""
        presented = bearer(conn.headers.get("authorization"))
        source: Literal["header", "query"] = "header"
        if presented is None and TOKEN_PARAM in conn.query_params:
            presented, source = conn.query_params[TOKEN_PARAM], "query"
        if presented is None and workspace is not None:
            for value in _cookies(conn, PREVIEW_COOKIE_NAME if kind == "preview" else COOKIE_NAME):
                if (claims := self._session(value, workspace, kind)) is not None:
                    return Credential(source="cookie", claims=claims)
        client = client_address(conn)
        if wait := self.limiter.blocked_for(client):
            raise TooManyAttempts(wait)
        if presented is None:
            raise Unauthorized(
                "The API token is missing: send it as 'Authorization: Bearer <token>' (or ?token=<token> on a "
                "websocket or a link); the server prints it at start-up, or set IDE_API_TOKEN"
            )
        if self.is_token(presented):
            return Credential(source=source)
        if looks_like_jwt(presented):
            try:
                claims = self.signer.decode(presented)
            except Unauthorized:
                self.limiter.failed(client)
                raise
            if self.revocations.voids(claims):
                raise Unauthorized("The token has been revoked; ask for a new one")
            return Credential(source=source, claims=claims)
        self.limiter.failed(client)
        raise Unauthorized(
            "The API token is wrong: send the one the server printed at start-up (or set IDE_API_TOKEN), or a token "
            "minted by POST /api/v1/tokens, as 'Authorization: Bearer <token>' or ?token=<token>"
        )

    def still_valid(self, credential: Credential) -> bool:
        """Whether a credential checked earlier (an open websocket's) has since expired or been revoked."""
        claims = credential.claims
        return claims is None or (claims.expires_at > time.time() and not self.revocations.voids(claims))

    # -- the IDE session cookie ---------------------------------------------------------------------------------

    def issue_session(
        self,
        ref: WorkspaceRef,
        opened_by: Credential | None = None,
        now: float | None = None,
        kind: SessionKind = "ide",
    ) -> str:
        """An IDE session cookie's value for one workspace: a signed token holding no part of the token that opened
        it, with that token's actions and issue time (so revoking it ends the session too)."""
        now = time.time() if now is None else now
        claims = opened_by.claims if opened_by is not None else None
        actions = claims.actions if claims is not None else frozenset(ACTIONS)
        ttl = self.session_ttl if claims is None else min(self.session_ttl, claims.expires_at - now)
        # Revocation compares issue times: a session is as old as the scoped token that opened it.
        issued_at = claims.issued_at if claims is not None else None
        value, _ = self.signer.mint(
            ref.project_id, ref.workspace_id, actions, ttl, now=now, session=True, issued_at=issued_at, kind=kind
        )
        return value

    def _session(self, value: str, ref: WorkspaceRef, kind: SessionKind = "ide") -> Claims | None:
        try:
            claims = self.signer.decode(value, session=True, kind=kind)
        except Unauthorized:
            return None
        if (claims.project_id, claims.workspace_id) != (ref.project_id, ref.workspace_id):
            return None
        if self.revocations.voids(claims):
            return None
        return claims

    def session_valid(self, value: str, ref: WorkspaceRef, kind: SessionKind = "ide") -> bool:
        return self._session(value, ref, kind) is not None


def _same(presented: str, secret: bytes) -> bool:
    """Constant-time comparison of a presented token with a secret, so neither can be guessed from timings."""
    return hmac.compare_digest(presented.encode(), secret)


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
