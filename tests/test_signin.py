"""The /ide/ proxy's sign-in to code-server (ide_backend.proxy.signin) and the workbench's reload script
(ide_backend.proxy.reload): the rules on their own, and SignIn against a small REAL upstream (an aiohttp server on
a loopback port that answers /login the way code-server does: a session cookie for the right password, the login
page again for a wrong one). The whole path with the real code-server is tests/test_code_server.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from ide_backend.errors import IDEUnavailable, NotRunning
from ide_backend.proxy.reload import Reload
from ide_backend.proxy.signin import SESSION_COOKIE, SignIn, own_page, with_session_cookie, without_session_cookie
from ide_backend.service.domain import IDETarget, WorkspaceRef

REF = WorkspaceRef("p1", "w1")
PREFIX = "/ide/p1/w1/"
PAGE = (
    b'<!DOCTYPE html><html><head><meta id="vscode-workbench-web-configuration" data-settings="{}">'
    b"</head><body></body></html>"
)


@pytest.mark.parametrize(
    ("status", "location", "refused"),
    [
        (302, "./login?to=%2F%3Ffolder%3D%2Fworkspace", True),
        (302, "../login", True),
        (302, "/ide/p1/w1/login", True),
        (401, None, True),
        (302, "./?folder=/workspace", False),
        (302, "./loginx", False),
        (200, None, False),
        (403, None, False),
    ],
)
def test_a_refusal_is_a_redirect_to_the_login_or_a_401(status: int, location: str | None, refused: bool) -> None:
    assert SignIn.refused(status, location) is refused


@pytest.mark.parametrize(
    ("method", "target", "location"),
    [
        ("GET", "/login?to=%2F%3Ffolder%3D%2Fworkspace", PREFIX + "?folder=/workspace"),
        ("GET", "/login", PREFIX),
        ("GET", "/logout", PREFIX),
        ("GET", "/vscode/login/", PREFIX),
        ("POST", "/login?to=/x", PREFIX),  # no password reaches code-server through the proxy
        ("GET", "/login?to=//elsewhere.example/", PREFIX),  # never another site
        ("GET", "/login?to=https://elsewhere.example/", PREFIX),
        ("GET", "/login?to=/%5Celsewhere", PREFIX),
    ],
)
def test_code_servers_login_and_logout_lead_back_to_the_workbench(method: str, target: str, location: str) -> None:
    path, _, query = target.partition("?")
    answer = own_page(method, path, query, PREFIX)
    assert answer is not None and answer.status_code == 303
    assert answer.headers["location"] == location


@pytest.mark.parametrize("path", ["/", "/loginx", "/static/login", "/login.js"])
def test_other_pages_go_to_code_server(path: str) -> None:
    assert own_page("GET", path, "", PREFIX) is None


def test_the_session_cookie_replaces_the_browsers() -> None:
    ours = f"{SESSION_COOKIE}=ours"
    headers = [("Accept", "*/*"), ("Cookie", f"theme=dark; {SESSION_COOKIE}=forged; lang=en")]
    assert with_session_cookie(headers, ours) == [("Accept", "*/*"), ("Cookie", f"theme=dark; lang=en; {ours}")]
    assert with_session_cookie([("Cookie", f"{SESSION_COOKIE}=forged")], ours) == [("Cookie", ours)]
    assert with_session_cookie([], ours) == [("Cookie", ours)]


def test_code_servers_cookie_never_reaches_the_browser() -> None:
    items = [
        ("Set-Cookie", f"{SESSION_COOKIE}=abc; Path=/; SameSite=Lax"),
        ("Set-Cookie", "other=1; Path=/"),
        ("Content-Type", "text/plain"),
    ]
    assert without_session_cookie(items) == items[1:]


def test_the_reload_script_goes_into_the_workbench_page_only() -> None:
    page = Reload.inject(PAGE, PREFIX, 'abc@2026"<x>')
    tag = b'<script src="/ide/p1/w1/__ide-backend/reload.js" data-generation="abc@2026&quot;&lt;x&gt;"></script>'
    assert tag + b"\n</head>" in page and page.count(b"<script") == 1
    other = b"<html><head></head><body>not the workbench</body></html>"
    assert Reload.inject(other, PREFIX, "g") == other
    assert Reload.wants("GET", "/?folder=/workspace") and Reload.wants("GET", "/vscode")
    assert not Reload.wants("GET", "/static/x.js") and not Reload.wants("POST", "/")
    assert Reload.fits(200, {"content-type": "text/html"})
    assert not Reload.fits(200, {"content-type": "text/html", "content-encoding": "gzip"})
    assert not Reload.fits(302, {"content-type": "text/html"})


def test_status_says_stopped_running_and_which_start() -> None:
    asyncio.run(_status())


async def _status() -> None:
    state: dict[str, IDETarget | None] = {"target": None}

    async def lookup(ref: WorkspaceRef) -> IDETarget:
        target = state["target"]
        if target is None:
            raise NotRunning("stopped")
        return target

    async def ready(host: str, port: int) -> bool:
        return port == 8080

    reload = Reload(lookup, ready)
    assert await reload.status(REF) == {"success": True, "running": False, "ready": False, "generation": None}
    state["target"] = IDETarget("10.0.0.2", 8080, "pw", "c1@t1")
    assert await reload.status(REF) == {"success": True, "running": True, "ready": True, "generation": "c1@t1"}
    assert await reload.generation(REF) == "c1@t1"


# --- SignIn against a real upstream ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Upstream:
    """A code-server-like /login on a real loopback port: counts the sign-ins, checks the form's password."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.logins = 0
        self.port = _free_port()

    def app(self) -> web.Application:
        async def login(request: web.Request) -> web.Response:
            self.logins += 1
            form = await request.post()  # only a form (code-server reads no other body)
            await asyncio.sleep(0.05)  # code-server hashes the password meanwhile
            if form.get("password") != self.password:
                return web.Response(
                    text='<form><input name="password"></form>Incorrect password', content_type="text/html"
                )
            response = web.HTTPFound("./")
            response.set_cookie(SESSION_COOKIE, "hash-of-" + self.password, path="/")
            raise response

        app = web.Application()
        app.router.add_post("/login", login)
        return app


@contextlib.asynccontextmanager
async def serving(up: Upstream) -> AsyncIterator[Upstream]:
    runner = web.AppRunner(up.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", up.port).start()
    try:
        yield up
    finally:
        await runner.cleanup()


async def _ready(host: str, port: int) -> bool:
    return True


def test_signs_in_once_for_many_requests_and_again_for_a_new_address() -> None:
    asyncio.run(_signs_in_once())


async def _signs_in_once() -> None:
    passwords = {"pw": "right"}
    async with serving(Upstream("right")) as upstream:
        await _sign_ins(upstream, passwords)


async def _sign_ins(upstream: Upstream, passwords: dict[str, str]) -> None:

    async def lookup(ref: WorkspaceRef) -> IDETarget:
        return IDETarget("127.0.0.1", upstream.port, passwords["pw"], "g1")

    async with aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as client:
        signin = SignIn(lookup, lambda: client, _ready)
        cookies = await asyncio.gather(*(signin.cookie(REF, "127.0.0.1", upstream.port) for _ in range(20)))
        assert set(cookies) == {f"{SESSION_COOKIE}=hash-of-right"} and upstream.logins == 1
        # A started workspace answers at another address: one new sign-in.
        await signin.cookie(REF, "127.0.0.1", upstream.port + 1)
        assert upstream.logins == 2
        # code-server refused the cookie: forgotten, the next request signs in again.
        signin.forget(REF)
        await signin.cookie(REF, "127.0.0.1", upstream.port + 1)
        assert upstream.logins == 3
        # A password code-server does not take: a clear 502 the browser can retry, never its login page.
        signin.forget(REF)
        passwords["pw"] = "wrong"
        with pytest.raises(IDEUnavailable, match="refused the backend's sign-in"):
            await signin.cookie(REF, "127.0.0.1", upstream.port)


def test_a_code_server_that_does_not_answer_is_unavailable() -> None:
    asyncio.run(_does_not_answer())


async def _does_not_answer() -> None:
    port = _free_port()  # nothing listens there

    async def lookup(ref: WorkspaceRef) -> IDETarget:
        return IDETarget("127.0.0.1", port, "pw", "g1")

    async with aiohttp.ClientSession() as client:
        signin = SignIn(lookup, lambda: client, _ready)
        with pytest.raises(IDEUnavailable, match="may still be starting"):
            await signin.cookie(REF, "127.0.0.1", port)
