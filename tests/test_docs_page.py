"""GET /docs in a real Chromium: the OpenAPI document rendered by Swagger UI from the locally installed npm package,
every endpoint of the document listed, nothing fetched from anywhere but this server."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest

from .harness import Server
from .helpers import chromium_browser

pytestmark = pytest.mark.browser


def test_the_docs_page_lists_every_endpoint_from_this_server_alone(server_without_engine: Server) -> None:
    server = server_without_engine
    document = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    own = urlparse(server.url).netloc
    elsewhere: list[str] = []
    with chromium_browser() as browser:
        page = browser.new_page()
        page.on(
            "request", lambda request: elsewhere.append(request.url) if urlparse(request.url).netloc != own else None
        )
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        shown = {
            element.inner_text().replace("\u200b", "").strip()
            for element in page.query_selector_all(".opblock-summary-path")
        }
        assert set(document["paths"]) <= shown, set(document["paths"]) - shown
        assert page.query_selector(".authorize") is not None  # the bearer token can be given
        page.screenshot(path=str(server.log_path.parent / "docs.png"))
    assert not elsewhere, elsewhere
    assert not errors, errors
