"""One login for VS Code: the /ide/ proxy signs in to each workspace's code-server itself, with the workspace's
password, and adds code-server's session cookie to the requests it forwards, so a user the backend let in never
sees code-server's password form.

code-server keeps `--auth password`, so its port stays locked against everything on the host but the backend (the
port is published on 127.0.0.1, where every local user and process can reach it). The proxy POSTs the password to
code-server's /login once per code-server address (a stopped and started workspace has a new one), keeps the
session cookie it answers in memory, and sends it upstream on every request and websocket; the browser never gets
it (upstream's Set-Cookie for it is dropped, a cookie of that name from the browser is replaced), and it never
reaches a log. code-server's own /login and /logout pages are not shown through the proxy: they send the browser
back to the workbench, signed in again when needed. docs/security.md says why this rather than `--auth none`.

    signin = SignIn(lookup, client, ready)
    own = await signin.own(method, target, ref, prefix)         # what the proxy answers itself, else None
    hook = await signin.hook(ref, host, port, method, target)   # adds the cookie upstream (IDEUnavailable: refused)
    response = await signin.answer(method, target, response, ref, prefix)   # the browser's view of upstream's
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from starlette.responses import RedirectResponse, Response, StreamingResponse

from ..errors import IDETimeout, IDEUnavailable
from ..service.domain import WorkspaceRef
from .cookies import join, strip_cookie
from .reload import MAX_PAGE, Ready, Reload, TargetLookup

log = logging.getLogger(__name__)

SESSION_COOKIE = "code-server-session"
# code-server's pages for signing in and out, which the proxy answers itself (a path below the workspace's prefix).
_OWN_PAGES = re.compile(r"^/(?:vscode/)?(?:login|logout)/?$")
# Where code-server sends a request it does not take the cookie for: "./login?to=...", "../login", "/login".
_TO_LOGIN = re.compile(r"(?:^|/)login/?$")


@dataclass(frozen=True)
class _Session:
    host: str  # the address the proxy reached code-server at when it signed in
    port: int
    cookie: str


class SignIn:
    """code-server sessions the proxy holds, one per workspace, signed in on first use."""

    def __init__(
        self, lookup: TargetLookup, client: Callable[[], aiohttp.ClientSession], ready: Ready, *, timeout: float = 15.0
    ) -> None:
        self._lookup = lookup
        self._reload = Reload(lookup, ready)
        self._client = client
        self._timeout = timeout
        self._sessions: dict[WorkspaceRef, _Session] = {}
        self._locks: dict[WorkspaceRef, asyncio.Lock] = {}

    # -- what the proxy asks ---------------------------------------------------------------------------------

    async def own(self, method: str, target: str, ref: WorkspaceRef, prefix: str) -> Response | None:
        """The proxy's own answer to a request for `target` (below the prefix), or None to forward it: the reload
        script and its status, and code-server's login and logout pages (back to the workbench)."""
        path, _, query = target.partition("?")
        if self._reload.owns(path):
            return await self._reload.answer(method, path, ref)
        return own_page(method, path, query, prefix)

    async def hook(
        self, ref: WorkspaceRef, host: str, port: int, method: str = "GET", target: str = ""
    ) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
        """What to do to a request's headers on their way to host:port: code-server's session cookie in place of
        any the browser sent, and no compression for the workbench page (read whole to add our script)."""
        cookie = await self.cookie(ref, host, port)
        plain = self._reload.wants(method, target)

        def apply(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
            out = with_session_cookie(headers, cookie)
            return [(k, v) for k, v in out if k.lower() != "accept-encoding"] if plain else out

        return apply

    async def answer(self, method: str, target: str, response: Response, ref: WorkspaceRef, prefix: str) -> Response:
        """upstream's answer as the browser gets it: never code-server's session cookie; a refusal of the cookie
        forgets it (the next request signs in again); the workbench page with the reload script."""
        items = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.raw_headers]
        kept = without_session_cookie(items)
        headers = {k.lower(): v for k, v in kept}
        if self.refused(response.status_code, headers.get("location")):
            self.forget(ref)
        if not (self._reload.wants(method, target) and self._reload.fits(response.status_code, headers)):
            response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept]
            return response
        assert isinstance(response, StreamingResponse)
        chunks: list[bytes] = []
        size = 0
        iterator = response.body_iterator.__aiter__()
        async for chunk in iterator:
            data = _bytes(chunk)
            chunks.append(data)
            size += len(data)
            if size > MAX_PAGE:  # not a workbench page after all: pass it on as it comes
                response.body_iterator = _chain(chunks, iterator)
                response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept]
                return response
        page = self._reload.inject(b"".join(chunks), prefix, await self._reload.generation(ref))
        rest = [(k, v) for k, v in kept if k.lower() not in ("content-length", "etag")]
        injected = Response(page, status_code=response.status_code)
        injected.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in [*rest, ("content-length", str(len(page)))]
        ]
        return injected

    # -- sessions ---------------------------------------------------------------------------------------------

    async def cookie(self, ref: WorkspaceRef, host: str, port: int) -> str:
        """The session cookie for the code-server at host:port, signing in when there is none for it yet."""
        session = self._sessions.get(ref)
        if session is not None and (session.host, session.port) == (host, port):
            return session.cookie
        lock = self._locks.setdefault(ref, asyncio.Lock())
        async with lock:
            session = self._sessions.get(ref)
            if session is None or (session.host, session.port) != (host, port):
                # Kept under the address the proxy asked for, which may lag the engine's by its short cache: the
                # cookie holds for any code-server with the same password, so that is no reason to sign in again.
                session = _Session(host, port, await self._sign_in(ref))
                self._sessions[ref] = session
            if len(self._locks) > 4096:  # locks of workspaces no longer in use
                self._locks = {r: lk for r, lk in self._locks.items() if r in self._sessions or lk.locked()}
        return session.cookie

    def forget(self, ref: WorkspaceRef) -> None:
        """code-server did not take the cookie (a new password): sign in again on the next request."""
        self._sessions.pop(ref, None)

    @staticmethod
    def refused(status: int, location: str | None) -> bool:
        """Whether code-server's answer says the request was not signed in (a redirect to its login, or 401)."""
        if status == 401:
            return True
        if status not in (301, 302, 303, 307, 308) or not location:
            return False
        return _TO_LOGIN.search(urlsplit(location).path) is not None

    async def _sign_in(self, ref: WorkspaceRef) -> str:
        """POST the workspace's password to its code-server's /login; returns the session cookie it sets."""
        target = await self._lookup(ref)
        url = f"http://{target.host}:{target.port}/login"
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._client().post(
                    url,
                    data=urlencode({"password": target.password}),
                    # the proxy's client sets no Content-Type of its own, and code-server reads only a form
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    allow_redirects=False,
                ) as answer,
            ):
                await answer.read()
                morsel = answer.cookies.get(SESSION_COOKIE)
                status = answer.status
        except TimeoutError as exc:
            raise IDETimeout(f"code-server in {ref} did not answer its sign-in within {self._timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise IDEUnavailable(
                f"code-server in {ref} does not answer on port {target.port} ({exc.__class__.__name__}); "
                "it may still be starting: try again in a moment",
                retryAfter=2,
            ) from exc
        if morsel is None or not morsel.value:
            # Wrong password (the container's PASSWORD differs from what code-server read) or code-server's own
            # rate limit after failed attempts by someone else on the host: a later try may pass.
            log.warning("code-server in %s refused the proxy's sign-in (HTTP %s)", ref, status)
            raise IDEUnavailable(
                f"code-server in {ref} refused the backend's sign-in (too many wrong passwords tried on its port, "
                "or a password changed outside the backend); try again in a minute, or stop and start the workspace",
                retryAfter=30,
            )
        log.info("signed in to code-server in %s", ref)
        return f"{SESSION_COOKIE}={morsel.coded_value}"


def own_page(method: str, path: str, query: str, prefix: str) -> Response | None:
    """code-server's login and logout pages, answered by the proxy: back to the workbench (or to the page the login
    was for), where the proxy's session is in place. None for every other request."""
    if not _OWN_PAGES.match(path):
        return None
    to = (parse_qs(query).get("to") or ["/"])[0] if method in ("GET", "HEAD") else "/"
    if not to.startswith("/") or to.startswith("//") or "\\" in to:
        to = "/"  # only a page of this code-server, never another site
    response = RedirectResponse(join(prefix, to), status_code=303)
    response.headers["cache-control"] = "no-store"
    return response


def _bytes(chunk: str | bytes | memoryview) -> bytes:
    return chunk.encode("latin-1") if isinstance(chunk, str) else bytes(chunk)


async def _chain(first: list[bytes], rest: AsyncIterator[str | bytes | memoryview]) -> AsyncIterator[bytes]:
    for chunk in first:
        yield chunk
    async for more in rest:
        yield _bytes(more)


def with_session_cookie(headers: Iterable[tuple[str, str]], cookie: str) -> list[tuple[str, str]]:
    """Request headers with `cookie` as the only code-server session cookie, in one Cookie header."""
    out: list[tuple[str, str]] = []
    kept: list[str] = []
    for name, value in headers:
        if name.lower() == "cookie":
            rest = strip_cookie(value, SESSION_COOKIE)
            if rest:
                kept.append(rest)
        else:
            out.append((name, value))
    out.append(("Cookie", "; ".join([*kept, cookie])))
    return out


def without_session_cookie(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Response headers without a Set-Cookie of code-server's session (it belongs to the proxy, not the browser)."""
    return [
        (name, value)
        for name, value in headers
        if not (name.lower() == "set-cookie" and value.split("=", 1)[0].strip() == SESSION_COOKIE)
    ]


__all__ = ["SESSION_COOKIE", "SignIn", "TargetLookup", "own_page", "with_session_cookie", "without_session_cookie"]
