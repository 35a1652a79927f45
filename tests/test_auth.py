"""Authentication in process, with real Starlette connections built from ASGI scopes: where a token is read, the
IDE session cookie, throttling, and what a credential may touch."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection

from ide_backend.api.auth import COOKIE_NAME, Authenticator, Credential, FailureLimiter
from ide_backend.errors import Forbidden, TooManyAttempts, Unauthorized
from ide_backend.service.domain import WorkspaceRef

TOKEN = "s3cret-token"
REF, OTHER = WorkspaceRef("p", "w"), WorkspaceRef("p", "x")


def conn(headers: dict[str, str] | None = None, query: str = "", client: str = "10.0.0.1") -> HTTPConnection:
    scope = {
        "type": "http",
        "path": "/api/v1/containers/status",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 1234),
    }
    return HTTPConnection(scope)


def auth(limit: int = 3) -> Authenticator:
    return Authenticator(TOKEN, FailureLimiter(limit), session_ttl=3600)


def test_the_token_is_read_from_the_header_or_the_query() -> None:
    a = auth()
    assert a.authenticate(conn({"Authorization": f"Bearer {TOKEN}"})) == Credential("header", admin=True)
    assert a.authenticate(conn({"Authorization": f"bearer  {TOKEN} "})).admin
    assert a.authenticate(conn(query=f"token={TOKEN}")).source == "query"
    with pytest.raises(Unauthorized, match="missing"):
        a.authenticate(conn({"Authorization": f"Basic {TOKEN}"}))
    with pytest.raises(Unauthorized, match="wrong"):
        a.authenticate(conn({"Authorization": "Bearer nope"}))


def test_wrong_tokens_are_throttled_per_address_but_a_session_still_works() -> None:
    a = auth(limit=2)
    session = a.issue_session(REF)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            a.authenticate(conn(query="token=guess"))
    with pytest.raises(TooManyAttempts):
        a.authenticate(conn({"Authorization": f"Bearer {TOKEN}"}))  # even the right one, for a while
    assert a.authenticate(conn({"Authorization": f"Bearer {TOKEN}"}, client="10.0.0.2")).admin  # others may
    cookie = conn({"Cookie": f"{COOKIE_NAME}={session}"})
    assert a.authenticate(cookie, workspace=REF).workspaces == frozenset({REF})


def test_the_ide_cookie_counts_only_for_its_workspace_and_until_it_expires() -> None:
    a = auth()
    cookie = {"Cookie": f"other=1; {COOKIE_NAME}={a.issue_session(REF)}"}
    credential = a.authenticate(conn(cookie), workspace=REF)
    assert credential.source == "cookie" and not credential.admin
    credential.require(REF, "write")
    with pytest.raises(Forbidden):
        credential.require(OTHER, "read")
    with pytest.raises(Forbidden):
        credential.require_admin("read the statistics")
    with pytest.raises(Unauthorized):
        a.authenticate(conn(cookie), workspace=OTHER)
    with pytest.raises(Unauthorized):
        a.authenticate(conn(cookie))  # not below /ide/: the cookie is no API credential
    expired = a.issue_session(REF, now=0)
    assert not a.session_valid(expired, REF)
    assert not auth().session_valid("1." + "x" * 43, REF)


def test_failure_limiter_window() -> None:
    limiter = FailureLimiter(2, window=0.0)
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.blocked_for("a") == 0.0  # a zero window forgets at once
    limiter = FailureLimiter(2, window=60.0)
    limiter.failed("a")
    assert limiter.count("a") == 1 and limiter.blocked_for("a") == 0.0
    limiter.failed("a")
    assert 59 < limiter.blocked_for("a") <= 60 and limiter.blocked_for("b") == 0.0
    limiter.clear()
    assert limiter.count("a") == 0
