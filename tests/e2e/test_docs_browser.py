"""The API docs pages in a real browser (Debian's Chromium, driven by Playwright) with no
way out to the internet: Swagger UI loads from the installed files and renders every
service's operations, on the gateway's combined `/docs` and on each service's own page."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

pytestmark = pytest.mark.stack

CHROMIUM = "/usr/bin/chromium"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM), "make install installs Debian's chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def offline_page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page whose every request off this machine is refused (and recorded)."""
    page = browser.new_page()
    outside: list[str] = []

    def only_local(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", only_local)
    try:
        yield page, outside
    finally:
        page.close()


def _rendered(page: Page, text: str) -> None:
    page.locator(".opblock-summary", has_text=text).first.wait_for(timeout=20_000)


def test_the_gateway_docs_render_every_service_without_the_internet(
    stack: Any, offline_page: tuple[Page, list[str]]
) -> None:
    page, outside = offline_page
    page.goto(f"{stack.gateway_url}/docs", wait_until="load")
    _rendered(page, "Push an APPROVED draft to the ERP")
    _rendered(page, "Approve a READY draft")
    _rendered(page, "Push a draft in ERROR again")
    summaries = page.locator(".opblock-summary-description").all_inner_texts()
    assert "Create a draft order (status NEW)" in summaries

    page.locator(".topbar select").select_option(label="export-service")
    _rendered(page, "Create an ERP connection")
    page.locator(".topbar select").select_option(label="audit-service")
    _rendered(page, "/audit-log/verify")
    assert outside == []


@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("draft-api", "Approve a READY draft"),
        ("export-service", "Check that the connection can deliver"),
        ("audit-service", "/audit-log"),
    ],
)
def test_each_service_docs_page_renders_its_own_spec(
    stack: Any, offline_page: tuple[Page, list[str]], service: str, operation: str
) -> None:
    page, outside = offline_page
    page.goto(f"{stack.gateway_url}/_svc/{service}/docs", wait_until="load")
    _rendered(page, operation)
    title = page.locator(".info .title").inner_text()
    assert service in title
    assert outside == []
