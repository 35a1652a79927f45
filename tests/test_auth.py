"""Authentication in process, with real Starlette connections built from ASGI scopes: where a token is read, the
IDE session cookie, throttling, and what a credential may touch."""

from __future__ import annotations

import time

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
    assert a.authenticate(conn({"Authorization": f"Bearer {TOKEN}"})) == Credential("header")
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
    opened = a.authenticate(cookie, workspace=REF)
    assert opened.source == "cookie" and opened.covers(REF) and not opened.covers(OTHER)


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


def test_scoped_tokens_cover_their_workspace_or_project_and_their_actions() -> None:
    a = auth()
    one, _ = a.signer.mint("p", "w", ["write"], 60)
    project, _ = a.signer.mint("p", None, ["read"], 60)
    c = a.authenticate(conn({"Authorization": f"Bearer {one}"}))
    assert not c.admin and c.may(REF, "write") and c.may(REF, "read") and not c.may(OTHER, "read")
    with pytest.raises(Forbidden, match="not valid for workspace p/x"):
        c.require(OTHER, "read")
    with pytest.raises(Forbidden):
        c.require_admin("mint tokens")
    r = a.authenticate(conn(query=f"token={project}"))
    assert r.may(REF, "read") and r.may(OTHER, "read") and not r.may(REF, "write")
    assert not r.may(WorkspaceRef("q", "w"), "read")
    with pytest.raises(Forbidden, match="may only read"):
        r.require(REF, "write")


def test_expired_tampered_and_foreign_tokens_are_401_and_counted() -> None:
    a = auth(limit=10)
    expired, _ = a.signer.mint("p", "w", ["write"], 5, now=1000.0)
    with pytest.raises(Unauthorized, match="expired"):
        a.authenticate(conn({"Authorization": f"Bearer {expired}"}))
    good, _ = a.signer.mint("p", "w", ["read"], 60)
    head, body, sig = good.split(".")
    tampered = ".".join([head, body, sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")])
    with pytest.raises(Unauthorized, match="not valid"):
        a.authenticate(conn({"Authorization": f"Bearer {tampered}"}))
    foreign, _ = Authenticator("other-operator", FailureLimiter(5), session_ttl=60).signer.mint("p", "w", ["read"], 60)
    with pytest.raises(Unauthorized, match="not valid"):
        a.authenticate(conn({"Authorization": f"Bearer {foreign}"}))
    session = a.issue_session(REF)  # a session cookie is not a token
    with pytest.raises(Unauthorized):
        a.authenticate(conn({"Authorization": f"Bearer {session}"}))
    assert a.limiter.count("10.0.0.1") == 4


def test_revocation_voids_tokens_issued_before_it_and_their_sessions() -> None:
    a = auth()
    old, claims = a.signer.mint("p", "w", ["write"], 600, now=time.time() - 10)
    project_wide, _ = a.signer.mint("p", None, ["write"], 600, now=time.time() - 10)
    opened = a.authenticate(conn({"Authorization": f"Bearer {old}"}))
    session = a.issue_session(REF, opened_by=opened)
    a.revocations.add("p", "w", claims.issued_at + 0.001)
    with pytest.raises(Unauthorized, match="revoked"):
        a.authenticate(conn({"Authorization": f"Bearer {old}"}))
    assert not a.still_valid(opened)
    assert not a.session_valid(session, REF)
    assert a.authenticate(conn({"Authorization": f"Bearer {project_wide}"})).may(REF, "write")  # not this scope
    newer, _ = a.signer.mint("p", "w", ["write"], 600)
    assert a.authenticate(conn({"Authorization": f"Bearer {newer}"})).may(REF, "write")
    a.revocations.add("p", "", claims.issued_at + 5)  # the whole project
    with pytest.raises(Unauthorized, match="revoked"):
        a.authenticate(conn({"Authorization": f"Bearer {project_wide}"}))
    assert a.is_token(TOKEN) and a.authenticate(conn({"Authorization": f"Bearer {TOKEN}"})).admin
