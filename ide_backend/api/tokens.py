"""Scoped tokens and IDE session cookies: JSON Web Tokens (HS256, PyJWT) signed with the server's token secret,
and the revocations every backend process reads from the shared database.

A scoped token names one project and optionally one workspace, the actions it may take (`read`, `write`), when it
was issued and when it expires. An IDE session cookie is the same kind of token, scoped to the one workspace whose
/ide/ path set it, carrying the issue time and actions of the token that opened it, and signed with a key that also
depends on the operator's token (rotating that token ends every IDE session).

`POST /api/v1/tokens/revoke` records, per project (and optionally workspace), the moment before which every token
issued for it is void; each process keeps the list in memory, reads it again every IDE_REVOCATION_POLL seconds,
and checks it on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

import jwt

from ..errors import Unauthorized

Action = Literal["read", "write"]
"""What a request does to a workspace: `read` looks (status, listings, attach, subscribe), `write` changes."""
ACTIONS: tuple[Action, ...] = ("read", "write")
ALGORITHM = "HS256"
_TOKEN_TYPE = "ide-backend/token"  # noqa: S105 - a type tag in the payload, not a secret
_SESSION_TYPE = "ide-backend/ide-session"
# A preview's session cookie (/preview/) is a session of another kind: neither opens what the other does.
_SESSION_TYPES = {"ide": _SESSION_TYPE, "preview": "ide-backend/preview-session"}
SessionKind = Literal["ide", "preview"]


@dataclass(frozen=True)
class Claims:
    """What a scoped token or an IDE session says about its holder."""

    project_id: str
    workspace_id: str | None  # None: every workspace of the project
    actions: frozenset[Action]
    issued_at: float  # Unix time, to the millisecond; what revocation compares
    expires_at: float
    token_id: str


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


class TokenSigner:
    """Mints and checks scoped tokens and IDE session cookies."""

    def __init__(self, secret: bytes, api_token: str) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 bytes (IDE_TOKEN_SECRET)")
        self._token_key = secret
        self._session_key = hmac.new(secret, api_token.encode(), hashlib.sha256).digest()

    def mint(
        self,
        project_id: str,
        workspace_id: str | None,
        actions: Iterable[Action],
        ttl: float,
        *,
        now: float | None = None,
        session: bool = False,
        issued_at: float | None = None,
        kind: SessionKind = "ide",
    ) -> tuple[str, Claims]:
        """A signed token; `issued_at` (default: now) is what revocation compares, `now + ttl` when it expires."""
        now = time.time() if now is None else now
        issued = round(now if issued_at is None else issued_at, 3)
        claims = Claims(
            project_id=project_id,
            workspace_id=workspace_id,
            actions=frozenset(actions),
            issued_at=issued,
            expires_at=now + ttl,
            token_id=secrets.token_hex(8),
        )
        payload: dict[str, Any] = {
            "typ": _SESSION_TYPES[kind] if session else _TOKEN_TYPE,
            "pid": project_id,
            "act": sorted(claims.actions),
            "iat": claims.issued_at,
            "exp": int(claims.expires_at),
            "jti": claims.token_id,
        }
        if workspace_id is not None:
            payload["wid"] = workspace_id
        key = self._session_key if session else self._token_key
        return jwt.encode(payload, key, algorithm=ALGORITHM), claims

    def decode(self, value: str, *, session: bool = False, kind: SessionKind = "ide") -> Claims:
        """The claims of a token this server signed and that has not expired; Unauthorized otherwise."""
        key = self._session_key if session else self._token_key
        try:
            payload = jwt.decode(
                value, key, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "pid", "act", "typ"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The token has expired; ask for a new one") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("The token is not valid (malformed, or not signed by this server)") from exc
        actions = payload.get("act")
        workspace = payload.get("wid")
        if (
            payload.get("typ") != (_SESSION_TYPES[kind] if session else _TOKEN_TYPE)
            or not isinstance(payload.get("pid"), str)
            or not isinstance(actions, list)
            or not set(actions) <= set(ACTIONS)
            or not (workspace is None or isinstance(workspace, str))
        ):
            raise Unauthorized("The token is not valid (not an ide-backend token)")
        return Claims(
            project_id=payload["pid"],
            workspace_id=workspace,
            actions=frozenset(cast(list[Action], actions)),
            issued_at=float(payload["iat"]),
            expires_at=float(payload["exp"]),
            token_id=str(payload.get("jti", "")),
        )


class Revocations:
    """Per (project, workspace or "" for the whole project): tokens issued before this moment are void."""

    def __init__(self) -> None:
        self._before: dict[tuple[str, str], float] = {}

    def merge(self, rows: Iterable[tuple[str, str, float]]) -> None:
        """Take in what the database holds. A revocation only ever moves later, so the later of two wins (a read
        that began before this process recorded one cannot undo it)."""
        for project_id, workspace_id, at in rows:
            self.add(project_id, workspace_id, at)

    def add(self, project_id: str, workspace_id: str, at: float) -> None:
        key = (project_id, workspace_id)
        self._before[key] = max(at, self._before.get(key, 0.0))

    def voids(self, claims: Claims) -> bool:
        """Whether a revocation of the token's project, or of the workspace it names, came after it was issued."""
        for key in ((claims.project_id, ""), (claims.project_id, claims.workspace_id or "")):
            at = self._before.get(key)
            if at is not None and claims.issued_at < at:
                return True
        return False
