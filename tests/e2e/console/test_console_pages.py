"""Every console page, at 1280x800 and at 390 px wide, in light and dark: axe-core finds
no serious or critical violation, nothing overflows sideways, and each is saved as a PNG
(`make screenshots` writes them to docs/screenshots/, a test run to a temporary dir)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.console.conftest import NARROW, WIDE, assert_accessible, create_draft
from tests.e2e.flow import LINE, Flow

pytestmark = pytest.mark.stack


def _shoot(page: Page, axe: Any, out: Path, name: str, width: str) -> None:
    assert_accessible(axe, page)
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"{name} at {width}: {overflow}px wider than the window"
    path = out / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


def test_every_page_at_both_widths_is_accessible_and_photographed(
    stack: Any, flow: Flow, consoles: Any, axe: Any, tmp_path: Path
) -> None:
    out = Path(os.environ.get("ORDERFLOW_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    http = flow.http
    pushed = flow.approved_draft()
    flow.push(pushed)
    ready = [create_draft(http, ref=f"PO-{4711 + i}") for i in range(3)]
    review = http.post(
        "/draft-orders",
        json={
            "customer_id": "C-2002",
            "external_ref": f"PO-REVIEW-{uuid.uuid4().hex[:4]}",
            "lines": [{**LINE, "quantity": "0", "unit": "BOX"}],
        },
    ).json()["id"]
    http.post(f"/draft-orders/{review}/validate")
    flow.wait_settled([pushed])
    connection = http.get("/erp-connections").json()[0]["id"]

    pages: list[tuple[str, str]] = [
        ("drafts", "/ui/drafts"),
        ("drafts-ready-search", "/ui/drafts?status=READY&q=PO-47"),
        ("draft-pushed", f"/ui/drafts/{pushed}"),
        ("draft-ready", f"/ui/drafts/{ready[0]}"),
        ("draft-needs-review", f"/ui/drafts/{review}"),
        ("draft-new", "/ui/drafts/new"),
        ("draft-edit", f"/ui/drafts/{review}/edit"),
        ("settings", "/ui/settings"),
        ("connections", "/ui/connections"),
        ("connection-new-sftp", "/ui/connections/new?type=sftp_dropzone"),
        ("connection-new-local", "/ui/connections/new?type=local_dropzone"),
        ("connection-edit", f"/ui/connections/{connection}"),
        ("not-found", f"/ui/drafts/{uuid.uuid4()}"),
    ]
    for width, viewport in (("1280", WIDE), ("390", NARROW)):
        console = consoles(viewport=viewport)
        page = console.page
        page.goto(console.url("/ui/sign-in"))
        _shoot(page, axe, out, "sign-in", width)
        console.sign_in("desk-1", flow.org, ["viewer", "operator", "approver", "admin"])
        console.wait_live()
        for name, path in pages:
            page.goto(console.url(path))
            _shoot(page, axe, out, name, width)
        page.goto(console.url("/ui/drafts"))
        page.keyboard.press("?")
        expect(page.locator("#keys")).to_be_visible()
        _shoot(page, axe, out, "keyboard-help", width)
        page.keyboard.press("Escape")
        page.goto(console.url(f"/ui/connections/{connection}"))
        page.click("text=Test connection")
        expect(page.locator("#test-summary")).to_be_visible()
        _shoot(page, axe, out, "connection-test", width)
        if width == "1280":
            page.goto(console.url("/ui/drafts?status=READY"))
            for draft_id in ready:
                page.check(f"#sel-{draft_id}")
            page.click("text=Approve selected")
            expect(page.locator("h1")).to_contain_text("3 of 3 done")
            _shoot(page, axe, out, "bulk-result", width)
        else:
            page.goto(console.url("/ui/drafts?status=APPROVED"))
            page.check(f"#sel-{ready[0]}")
            page.click("text=Push selected")
            expect(page.locator("h1")).to_contain_text("1 of 1 done")
            _shoot(page, axe, out, "bulk-result", width)

    dark = consoles(viewport=WIDE)
    dark.page.emulate_media(color_scheme="dark")
    dark.sign_in("desk-1", flow.org, ["viewer", "operator", "approver", "admin"])
    background = dark.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 20, 23)"  # the dark palette follows the system setting
    _shoot(dark.page, axe, out, "drafts-dark", "1280")
    dark.page.goto(dark.url(f"/ui/drafts/{pushed}"))
    _shoot(dark.page, axe, out, "draft-pushed-dark", "1280")
    assert len(list(out.glob("*.png"))) >= 2 * (len(pages) + 4) + 2
