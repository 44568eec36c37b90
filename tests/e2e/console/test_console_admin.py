"""Four-eyes, an SFTP outage past the retry bound, ERP connections, the feed's org
isolation and a lost feed, in the console."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.console.conftest import LIVE_MS, api_as, assert_accessible, create_draft
from tests.e2e.flow import Flow, wait_for

pytestmark = pytest.mark.stack


def test_with_four_eyes_on_the_creator_cannot_approve(
    stack: Any, flow: Flow, consoles: Any, axe: Any
) -> None:
    admin = consoles()
    page = admin.sign_in("boss", flow.org, ["admin", "viewer"])
    page.click("text=Settings")
    expect(page.locator("#four-eyes-state")).to_have_text("off")
    assert_accessible(axe, page)
    page.check("#four_eyes")
    page.click("text=Save")
    expect(page.locator("#four-eyes-state")).to_have_text("on")

    alice = api_as(stack, flow.org, "alice", ["operator", "approver"])
    draft_id = create_draft(alice)
    refused = alice.post(f"/draft-orders/{draft_id}/approve")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "Four-eyes rule" in refused.json()["detail"]

    creator = consoles()
    page = creator.sign_in("alice", flow.org, ["operator", "approver"])
    page.goto(creator.url(f"/ui/drafts/{draft_id}"))
    expect(page.locator("#draft-status")).to_have_text("READY")
    assert page.locator('[data-action="approve"]').count() == 0
    expect(page.locator("#four-eyes-note")).to_contain_text("four-eyes rule is on")
    assert_accessible(axe, page)
    # the bulk action says why, per draft
    page.goto(creator.url("/ui/drafts?status=READY"))
    page.check(f"#sel-{draft_id}")
    page.click("text=Approve selected")
    expect(page.locator("tr.failed")).to_contain_text("Four-eyes rule")

    # another approver may
    bob = consoles()
    page = bob.sign_in("bob", flow.org, ["operator", "approver"])
    page.goto(bob.url(f"/ui/drafts/{draft_id}"))
    page.click('[data-action="approve"]')
    expect(page.locator("#draft-status")).to_have_text("APPROVED")
    assert flow.statuses([draft_id])["APPROVED"] == 1


def _connection_id(flow: Flow) -> str:
    found = flow.http.get("/erp-connections").json()
    return str(found[0]["id"])


def test_an_sftp_outage_past_the_retry_bound_shows_error_and_retry_pushes(
    stack: Any, flow: Flow, consoles: Any, axe: Any
) -> None:
    # this org's connection retries for 3 s only, so the outage outlasts it quickly
    patched = flow.http.patch(
        f"/erp-connections/{_connection_id(flow)}", json={"delivery_deadline_seconds": 3}
    )
    assert patched.status_code == 200, patched.text
    draft_id = flow.approved_draft()
    console = consoles()
    page = console.sign_in("desk-6", flow.org, ["operator", "approver"])
    page.goto(console.url(f"/ui/drafts/{draft_id}"))
    console.wait_live()
    stack.stop("sftp")
    try:
        page.click('[data-action="push"]')
        expect(page.locator("#draft-status")).to_have_text("ERROR", timeout=LIVE_MS)
        expect(page.locator("#live-reason")).to_contain_text("Push failed", timeout=LIVE_MS)
        expect(page.locator('[data-action="retry"]')).to_be_visible(timeout=LIVE_MS)
        reason = page.locator("#live-reason").inner_text()
        code = stack.psql(
            "SELECT error_json->>'error_code' FROM draft.push_attempt WHERE draft_id = %s",
            (draft_id,),
        )[0][0]
        assert code and code in reason
        assert_accessible(axe, page)
    finally:
        stack.start("sftp")
    page.evaluate("window.__sameDocument = true")
    page.click('[data-action="retry"]')
    expect(page.locator(".flash.ok")).to_contain_text("Retry requested")
    expect(page.locator("#draft-status")).to_have_text("PUSHED", timeout=LIVE_MS)

    def attempts() -> list[tuple[Any, ...]]:
        return stack.psql(
            "SELECT attempt, status FROM draft.push_attempt WHERE draft_id = %s ORDER BY attempt",
            (draft_id,),
        )

    # the page shows export.sent as it arrives; draft-api's consumer records it just after
    wait_for(
        lambda: attempts() == [(1, "FAILED"), (2, "SENT")],
        timeout=30,
        what="attempt 1 FAILED and attempt 2 SENT in draft.push_attempt",
    )


def test_an_admin_creates_edits_tests_and_deactivates_a_connection(
    stack: Any, consoles: Any, axe: Any
) -> None:
    flow = Flow(stack, connector=False)
    try:
        console = consoles()
        page = console.sign_in("admin-1", flow.org, ["admin"])
        page.click("text=ERP connections")
        expect(page.locator(".empty")).to_contain_text("No connection yet")
        assert_accessible(axe, page)
        page.click("text=New SFTP connection")
        page.fill("#name", "Main ERP")
        page.fill("#sftp_host", "127.0.0.1")
        page.fill("#sftp_port", str(stack.sftp_port))
        page.fill("#sftp_username", stack.sftp_username)
        page.fill("#sftp_remote_directory", "/inbox")
        page.click("#fetch-fingerprint")
        expect(page.locator("#sftp_host_key_fingerprint")).to_have_value(
            stack.sftp_host_key_fingerprint
        )
        expect(page.locator("#fingerprint-note")).to_contain_text("Compare it")
        page.fill("#sftp_private_key", stack.sftp_private_key)
        assert_accessible(axe, page)
        page.click("text=Create connection")
        expect(page.locator(".flash.ok")).to_contain_text("Connection created")
        assert "BEGIN OPENSSH" not in page.content()  # a secret never comes back
        page.click("text=Test connection")
        expect(page.locator("#test-summary")).to_contain_text("The connection works")
        steps = page.locator("#test-steps li")
        assert steps.count() >= 2
        assert all("passed" in text for text in steps.all_inner_texts())
        assert_accessible(axe, page)

        page.goto(console.url("/ui/connections"))
        page.click("text=Main ERP")
        page.fill("#name", "Main ERP (renamed)")
        page.click("text=Save connection")
        expect(page.locator(".flash.ok")).to_contain_text("Connection saved")
        page.click("text=Deactivate")
        expect(page.locator(".flash.ok")).to_contain_text("inactive")
        page.goto(console.url("/ui/connections"))
        row = page.locator("tr", has_text="Main ERP (renamed)")
        expect(row).to_contain_text("Inactive")
        row.locator("button", has_text="Activate").click()
        expect(page.locator(".flash.ok")).to_contain_text("is active")

        # a wrong fingerprint: the test says in words which step failed
        page.click("text=Main ERP (renamed)")
        page.fill("#sftp_host_key_fingerprint", "SHA256:" + "A" * 43)
        page.click("text=Save connection")
        page.click("text=Test connection")
        expect(page.locator("#test-summary")).to_contain_text("does not work")
        expect(page.locator("#test-steps li.failed")).not_to_have_count(0)

        # a refusal from export-service is a sentence on the form, not JSON
        page.goto(console.url("/ui/connections/new?type=local_dropzone"))
        page.fill("#name", "Elsewhere")
        page.fill("#local_directory", "/etc")
        page.uncheck("#is_active")
        page.click("text=Create connection")
        expect(page.locator(".flash.error")).to_be_visible()
        assert "{" not in page.locator(".flash.error").inner_text()
        assert_accessible(axe, page)
    finally:
        flow.close()


class _Stream:
    """The console's event stream as one signed-in browser gets it (cookie session)."""

    def __init__(self, stack: Any, org: str) -> None:
        self.http = httpx.Client(base_url=stack.gateway_url, timeout=30, follow_redirects=False)
        form = self.http.get("/ui/sign-in").text
        nonce = re.search(r'name="nonce" value="([^"]+)"', form)
        assert nonce
        signed = self.http.post(
            "/ui/sign-in",
            data={
                "nonce": nonce.group(1),
                "next": "/ui/drafts",
                "user_id": "spy",
                "org_id": org,
                "roles": ["viewer", "operator", "approver", "admin"],
            },
        )
        assert signed.status_code == 303
        self.lines: list[str] = []
        self.live = threading.Event()
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        try:
            with self.http.stream("GET", "/ui/events", timeout=None) as response:
                for line in response.iter_lines():
                    self.lines.append(line)
                    if line == 'data: {"live":true}':
                        self.live.set()
        except httpx.HTTPError:
            pass

    def saw(self, draft_id: str) -> bool:
        return any(draft_id in line for line in list(self.lines))

    def csrf(self) -> str:
        page = self.http.get("/ui/settings").text
        found = re.search(r'name="csrf" content="([^"]+)"', page)
        assert found
        return found.group(1)


@pytest.fixture
def two_orgs(stack: Any, flow: Flow) -> Iterator[tuple[Flow, Flow]]:
    other = Flow(stack, connector=False)
    yield flow, other
    other.close()


def test_the_feed_and_the_pages_never_cross_organisations(
    stack: Any, two_orgs: tuple[Flow, Flow]
) -> None:
    a, b = two_orgs
    stream_a, stream_b = _Stream(stack, a.org), _Stream(stack, b.org)
    assert stream_a.live.wait(60) and stream_b.live.wait(60)
    draft_a = a.approved_draft()
    a.push(draft_a)
    wait_for(
        lambda: stream_a.saw(draft_a) and any("export.sent" in x for x in stream_a.lines),
        timeout=60,
        what="org A's stream to show its draft pushed",
    )
    draft_b = create_draft(b.http)
    wait_for(lambda: stream_b.saw(draft_b), timeout=60, what="org B's stream to show its draft")
    assert not stream_b.saw(draft_a)
    assert not stream_a.saw(draft_b)

    # org B's admin, through the console: A's draft and connection do not exist for it
    ready_a = create_draft(a.http)
    assert stream_b.http.get(f"/ui/drafts/{ready_a}").status_code == 404
    csrf = stream_b.csrf()
    stream_b.http.post(f"/ui/drafts/{ready_a}/approve", data={"csrf": csrf})
    assert a.statuses([ready_a])["READY"] == 1
    connection_a = _connection_id(a)
    assert stream_b.http.get(f"/ui/connections/{connection_a}").status_code == 404
    assert connection_a not in stream_b.http.get("/ui/connections").text
    listing = stream_b.http.get("/ui/drafts").text
    assert ready_a not in listing and draft_a not in listing
    # and a CSRF token of one session is worth nothing in another
    stolen = stream_a.csrf()
    refused = stream_b.http.post(f"/ui/drafts/{draft_b}/approve", data={"csrf": stolen})
    assert refused.status_code == 403
    assert b.statuses([draft_b])["READY"] == 1


def test_a_lost_live_feed_is_shown_and_comes_back(stack: Any, flow: Flow, consoles: Any) -> None:
    console = consoles()
    page = console.sign_in("desk-7", flow.org, ["operator", "approver"])
    console.wait_live()
    # the gateway goes away: the stream drops and the browser keeps trying
    stack.stop("gateway")
    try:
        expect(page.locator("#live-state.lost")).to_contain_text("reconnecting", timeout=LIVE_MS)
    finally:
        stack.start("gateway")
    console.wait_live()
    # draft-api's HTTP process goes away: the gateway refuses the stream (503), which
    # closes it for good in the browser; the page opens it again once draft-api is back
    stack.stop("draft-api")
    try:
        expect(page.locator("#live-state.lost")).to_contain_text("reconnecting", timeout=LIVE_MS)
    finally:
        stack.start("draft-api")
    console.wait_live()
    # and it is live for real again: a new draft's count arrives without a reload
    page.evaluate("window.__sameDocument = true")
    create_draft(flow.http)
    expect(page.locator('[data-count="READY"]')).to_have_text("1", timeout=LIVE_MS)
    assert page.evaluate("window.__sameDocument") is True
    console.errors.clear()  # the browser reports the dropped stream; that was the point
