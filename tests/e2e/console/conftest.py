"""The operator console in a real browser: Debian's Chromium driven by Playwright, on the
test stack's gateway. Helpers: sign in as a chosen user, create drafts through the API,
and check every page with axe-core (0 serious or critical violations)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.e2e.flow import LINE, Flow

CHROMIUM = "/usr/bin/chromium"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}
#: how long a page may take to show what the feed brings
LIVE_MS = 60_000


# per module: the sync API runs an event loop on this thread while it is open, and the
# tests of other modules need that thread free of one (asyncio.run, other browsers)
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


@pytest.fixture(scope="session")
def axe() -> Axe:
    return Axe()


def assert_accessible(axe: Axe, page: Page) -> None:
    """axe-core on the page as it is: no serious or critical violation."""
    results = axe.run(page)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:3])
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    assert not bad, f"{page.url}: {bad}"


class Console:
    """One browser context (its own cookies) signed in as one user of one org."""

    def __init__(self, stack: Any, browser: Browser, *, viewport: dict[str, int] = WIDE) -> None:
        self.stack = stack
        self.base = stack.gateway_url
        self.context: BrowserContext = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(20_000)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.errors: list[str] = []

    def close(self) -> None:
        self.context.close()

    def url(self, path: str) -> str:
        return self.base + path

    def sign_in(self, user: str, org: str, roles: list[str]) -> Page:
        page = self.page
        page.goto(self.url("/ui/sign-in"))
        page.fill("#user_id", user)
        page.fill("#org_id", org)
        for box in page.locator('input[name="roles"]').all():
            value = box.get_attribute("value")
            box.set_checked(value in roles)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/drafts")
        return page

    def wait_live(self) -> None:
        self.page.locator("#live-state.on").wait_for(timeout=LIVE_MS)


@pytest.fixture
def consoles(stack: Any, browser: Browser) -> Iterator[Any]:
    opened: list[Console] = []

    def open_console(**kwargs: Any) -> Console:
        console = Console(stack, browser, **kwargs)
        opened.append(console)
        return console

    yield open_console
    for console in opened:
        errors = console.errors
        console.close()
        assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def flow(stack: Any) -> Iterator[Flow]:
    """A fresh organisation with an active SFTP connection (API token: every role)."""
    f = Flow(stack)
    yield f
    f.close()


def api_as(stack: Any, org: str, user: str, roles: list[str]) -> httpx.Client:
    return httpx.Client(
        base_url=stack.gateway_url,
        headers={"Authorization": f"Bearer {stack.token(roles=roles, org=org, sub=user)}"},
        timeout=30,
    )


def create_draft(http: httpx.Client, *, ref: str | None = None, validate: bool = True) -> str:
    body = {
        "customer_id": "C-UI",
        "external_ref": ref or f"UI-{uuid.uuid4().hex[:10]}",
        "lines": [LINE],
    }
    created = http.post("/draft-orders", json=body)
    assert created.status_code == 201, created.text
    draft_id = str(created.json()["id"])
    if validate:
        validated = http.post(f"/draft-orders/{draft_id}/validate")
        assert validated.json()["status"] == "READY", validated.text
    return draft_id
