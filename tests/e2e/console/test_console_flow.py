"""The order desk's day in the console: create, validate, approve, push and watch the
status arrive live; the audit timeline beside the order; bulk approve and push; what a
viewer sees; keyboard only."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import LIVE_MS, api_as, assert_accessible, create_draft
from tests.e2e.flow import LINE, Flow, wait_for

pytestmark = pytest.mark.stack


def test_operator_and_approver_create_validate_approve_push_and_see_pushed_live(
    stack: Any, flow: Flow, consoles: Any, axe: Any
) -> None:
    console = consoles()
    page = console.sign_in("desk-1", flow.org, ["operator", "approver"])
    assert_accessible(axe, page)
    console.wait_live()

    page.click("text=New draft")
    assert_accessible(axe, page)
    ref = f"PO-UI-{uuid.uuid4().hex[:8]}"
    page.fill("#customer_id", "C-4711")
    page.fill("#external_ref", ref)
    page.fill('input[aria-label="Line 1 SKU"]', "SKU-9")
    page.fill('input[aria-label="Line 1 description"]', "Gear wheel")
    page.fill('input[aria-label="Line 1 quantity"]', "4")
    page.fill('input[aria-label="Line 1 unit"]', "EA")
    page.fill('input[aria-label="Line 1 unit price"]', "12.50")
    page.fill('input[aria-label="Line 1 currency"]', "EUR")
    page.click("text=Create draft")
    expect(page.locator("#draft-status")).to_have_text("NEW")
    expect(page.locator("dl.header")).to_contain_text("50.00")  # 4 x 12.50
    page.click('[data-action="validate"]')
    expect(page.locator("#draft-status")).to_have_text("READY")
    expect(page.locator(".flash.ok")).to_contain_text("READY")
    page.click('[data-action="approve"]')
    expect(page.locator("#draft-status")).to_have_text("APPROVED")
    assert_accessible(axe, page)
    console.wait_live()
    draft_id = page.locator("#draft-live").get_attribute("data-draft")
    assert draft_id
    # a colleague has the same draft open, shown APPROVED: it must change by itself
    watcher = consoles()
    watching = watcher.sign_in("desk-9", flow.org, ["viewer"])
    watching.goto(watcher.url(f"/ui/drafts/{draft_id}"))
    expect(watching.locator("#draft-status")).to_have_text("APPROVED")
    watcher.wait_live()
    watching.evaluate("window.__sameDocument = true")

    page.click('[data-action="push"]')
    expect(page.locator(".flash.ok")).to_contain_text("Push requested")
    # neither page is reloaded from here on: PUSHED comes over the live feed
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#draft-status")).to_have_text("PUSHED", timeout=LIVE_MS)
    expect(watching.locator("#draft-status")).to_have_text("PUSHED", timeout=LIVE_MS)
    assert page.evaluate("window.__sameDocument") is True
    assert watching.evaluate("window.__sameDocument") is True
    # the page learns it from export.sent, draft-api's consumer applies the same event
    wait_for(
        lambda: flow.statuses([draft_id])["PUSHED"] == 1,
        timeout=30,
        what="draft-api to record the draft as PUSHED",
    )
    # the push history fills in (fragment refresh after the event) with the remote path
    expect(page.locator("#draft-live table").last).to_contain_text("SENT", timeout=LIVE_MS)

    def timeline_complete() -> bool:
        page.reload()
        text = page.locator("#audit").inner_text()
        return all(word in text for word in ("Draft created", "Draft approved", "Export sent"))

    wait_for(timeline_complete, timeout=60, what="the audit timeline of the draft")
    expect(page.locator("#audit")).to_contain_text("desk-1")
    expect(page.locator("#draft-live")).to_contain_text(".csv")  # remote path of the file
    assert_accessible(axe, page)


def test_bulk_approve_then_bulk_push_ten_drafts_reports_each(
    stack: Any, flow: Flow, consoles: Any, axe: Any
) -> None:
    drafts = [
        create_draft(flow.http, ref=f"BULK-{i:02d}-{uuid.uuid4().hex[:6]}") for i in range(10)
    ]
    console = consoles()
    page = console.sign_in("desk-2", flow.org, ["operator", "approver"])
    page.goto(console.url("/ui/drafts?status=READY"))
    expect(page.locator('[data-count="READY"]')).to_have_text("10")
    for draft_id in drafts:
        page.check(f"#sel-{draft_id}")
    page.click("text=Approve selected")
    expect(page.locator("h1")).to_contain_text("10 of 10 done")
    expect(page.locator("tr.ok")).to_have_count(10)
    assert_accessible(axe, page)
    assert flow.statuses(drafts)["APPROVED"] == 10

    # a second desk watches the list: its counts must follow without a reload
    watcher = consoles()
    watching = watcher.sign_in("desk-8", flow.org, ["viewer"])
    expect(watching.locator('[data-count="APPROVED"]')).to_have_text("10")
    expect(watching.locator('[data-count="PUSHED"]')).to_have_text("0")
    watcher.wait_live()
    watching.evaluate("window.__sameDocument = true")

    page.goto(console.url("/ui/drafts?status=APPROVED"))
    console.wait_live()
    for draft_id in drafts:
        page.check(f"#sel-{draft_id}")
    page.click("text=Push selected")
    expect(page.locator("h1")).to_contain_text("10 of 10 done")
    rows = page.locator("tr.ok td:nth-child(3)").all_inner_texts()
    assert rows == ["Push requested."] * 10
    keys = stack.psql(
        "SELECT count(DISTINCT key) FROM draft.idempotency_key WHERE draft_id = ANY(%s::uuid[])",
        (drafts,),
    )
    assert keys == [(10,)]  # each push its own Idempotency-Key

    # the watching list's counts followed the feed: PUSHED 10, APPROVED 0, no reload
    expect(watching.locator('[data-count="PUSHED"]')).to_have_text("10", timeout=LIVE_MS)
    expect(watching.locator('[data-count="PUSHING"]')).to_have_text("0", timeout=LIVE_MS)
    expect(watching.locator('[data-count="APPROVED"]')).to_have_text("0", timeout=LIVE_MS)
    for draft_id in drafts:
        expect(watching.locator(f'[data-status-of="{draft_id}"]')).to_have_text("PUSHED")
    assert watching.evaluate("window.__sameDocument") is True
    assert flow.statuses(drafts)["PUSHED"] == 10

    # pushing them again is refused per draft, with the reason
    page.goto(console.url("/ui/drafts?status=PUSHED"))
    page.check(f"#sel-{drafts[0]}")
    page.click("text=Push selected")
    expect(page.locator("tr.failed")).to_contain_text("Draft must be APPROVED")


def test_a_viewer_sees_no_action_buttons(stack: Any, flow: Flow, consoles: Any, axe: Any) -> None:
    ready = create_draft(flow.http)
    console = consoles()
    page = console.sign_in("viewer-1", flow.org, ["viewer"])
    expect(page.locator("table.drafts tbody tr")).to_have_count(1)
    assert page.locator(".bulk-bar button").count() == 0
    assert page.locator("text=New draft").count() == 0
    page.goto(console.url(f"/ui/drafts/{ready}"))
    expect(page.locator("#draft-status")).to_have_text("READY")
    assert page.locator("#actions button, #actions a").count() == 0
    expect(page.locator("#draft-live")).to_contain_text("viewer role")
    assert_accessible(axe, page)
    # and the keys do nothing either
    page.keyboard.press("a")
    page.goto(console.url(f"/ui/drafts/{ready}"))
    expect(page.locator("#draft-status")).to_have_text("READY")


def test_keyboard_only_triage_j_k_a_p_slash_and_help(
    stack: Any, flow: Flow, consoles: Any, axe: Any
) -> None:
    first = create_draft(flow.http, ref=f"KEY-A-{uuid.uuid4().hex[:6]}")
    second = create_draft(flow.http, ref=f"KEY-B-{uuid.uuid4().hex[:6]}")
    console = consoles()
    page = console.sign_in("desk-3", flow.org, ["operator", "approver"])
    console.wait_live()
    page.keyboard.press("?")
    expect(page.locator("#keys")).to_be_visible()
    assert_accessible(axe, page)
    page.keyboard.press("Escape")
    expect(page.locator("#keys")).to_be_hidden()
    # newest first: j selects the second draft, j again the first, k back up
    page.keyboard.press("j")
    expect(page.locator("tr.current")).to_have_attribute("data-id", second)
    page.keyboard.press("j")
    expect(page.locator("tr.current")).to_have_attribute("data-id", first)
    page.keyboard.press("a")  # approve the current row
    expect(page.locator(".flash.ok")).to_contain_text("Approved")
    assert flow.statuses([first])["APPROVED"] == 1
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator("tr.current")).to_have_attribute("data-id", first)
    page.keyboard.press("p")  # push it
    expect(page.locator(".flash.ok")).to_contain_text("Push requested")
    expect(page.locator(f'[data-status-of="{first}"]')).to_have_text("PUSHED", timeout=LIVE_MS)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("KEY-B")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*q=KEY-B.*"))
    expect(page.locator("table.drafts tbody tr")).to_have_count(1)
    # Tab reaches the row link with a visible focus ring; Enter opens the draft
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/ui/drafts/{second}")
    outline = page.evaluate(
        "(() => { const b = document.querySelector('[data-action=approve]'); b.focus();"
        " return getComputedStyle(b).outlineStyle; })()"
    )
    assert outline != "none"
    page.keyboard.press("a")
    expect(page.locator("#draft-status")).to_have_text("APPROVED")


def test_editing_lines_of_a_draft_that_needs_review(
    stack: Any, flow: Flow, consoles: Any, axe: Any
) -> None:
    http = flow.http
    created = http.post(
        "/draft-orders",
        json={
            "customer_id": "C-UI",
            "external_ref": f"FIX-{uuid.uuid4().hex[:6]}",
            "lines": [{**LINE, "quantity": "0"}],
        },
    )
    draft_id = created.json()["id"]
    assert http.post(f"/draft-orders/{draft_id}/validate").json()["status"] == "NEEDS_REVIEW"
    console = consoles()
    page = console.sign_in("desk-4", flow.org, ["operator"])
    page.goto(console.url(f"/ui/drafts/{draft_id}"))
    expect(page.locator("#draft-status")).to_have_text("NEEDS_REVIEW")
    expect(page.locator("section", has_text="Validation issues")).to_contain_text("quantity")
    page.click("text=Edit lines")
    assert_accessible(axe, page)
    page.fill('input[aria-label="Line 1 quantity"]', "abc")
    page.click("text=Save lines")
    expect(page.locator(".flash.error")).to_be_visible()  # a 422 in words, not JSON
    assert "{" not in page.locator(".flash.error").inner_text()
    page.fill('input[aria-label="Line 1 quantity"]', "2")
    page.fill('input[aria-label="Line 2 SKU"]', "SKU-2")
    page.fill('input[aria-label="Line 2 quantity"]', "1")
    page.fill('input[aria-label="Line 2 unit price"]', "3")
    page.fill('input[aria-label="Line 2 currency"]', "EUR")
    page.click("text=Save lines")
    expect(page.locator("#draft-status")).to_have_text("NEW")
    page.click('[data-action="validate"]')
    expect(page.locator("#draft-status")).to_have_text("READY")
    draft = http.get(f"/draft-orders/{draft_id}").json()
    assert [line["quantity"] for line in draft["lines"]] == ["2", "1"]
    assert draft["last_edited_by_user_id"] == "desk-4"


def test_refusals_are_sentences_on_the_page(
    stack: Any, flow: Flow, consoles: Any, axe: Any
) -> None:
    console = consoles()
    page = console.sign_in("desk-5", flow.org, ["operator", "approver"])
    response = page.goto(console.url(f"/ui/drafts/{uuid.uuid4()}"))
    assert response is not None and response.status == 404
    expect(page.locator(".flash.error")).to_contain_text("not found")
    assert_accessible(axe, page)
    draft_id = create_draft(api_as(stack, flow.org, "other", ["operator"]), validate=False)
    page.goto(console.url(f"/ui/drafts/{draft_id}"))
    # approve a NEW draft by hand-made form (the button is not offered): a 409 in words
    csrf = page.locator('meta[name="csrf"]').get_attribute("content")
    page.evaluate(
        """([id, csrf]) => { const f = document.createElement('form'); f.method = 'post';
        f.action = '/ui/drafts/' + id + '/approve';
        const i = document.createElement('input'); i.name = 'csrf'; i.value = csrf;
        f.appendChild(i); document.body.appendChild(f); f.submit(); }""",
        [draft_id, csrf],
    )
    expect(page.locator(".flash.error")).to_contain_text("Draft must be READY")
    # a form without the CSRF token is refused
    status = page.evaluate(
        """async (id) => (await fetch('/ui/drafts/' + id + '/validate', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf=x'})).status""",
        draft_id,
    )
    assert status == 403
    assert flow.statuses([draft_id])["NEW"] == 1
    # a 400: a status that does not exist
    response = page.goto(console.url("/ui/drafts?status=BOGUS"))
    assert response is not None and response.status == 400
    expect(page.locator(".flash.error")).to_contain_text("no status")
    # a service that is down: a 503 in words, and a page that still shows what it can
    stack.stop("export-service")
    try:
        response = page.goto(console.url("/ui/connections"))
        assert response is not None and response.status == 503
        expect(page.locator(".flash.error")).to_contain_text("ERP connection service")
        assert_accessible(axe, page)
    finally:
        stack.start("export-service")
    stack.stop("audit-service")
    try:
        response = page.goto(console.url(f"/ui/drafts/{draft_id}"))
        assert response is not None and response.status == 200
        expect(page.locator("#audit")).to_contain_text("audit timeline cannot be shown")
        expect(page.locator("#draft-status")).to_have_text("NEW")
    finally:
        stack.start("audit-service")
