"""The approve & push quickstart, step by step, against the running stack via the gateway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

pytestmark = pytest.mark.stack

ORDER = {
    "customer_id": "C-1001",
    "lines": [
        {
            "sku": "SKU-1",
            "description": "Widget",
            "quantity": 3,
            "unit": "EA",
            "unit_price": "9.50",
            "currency": "EUR",
        }
    ],
}


def wait_for(condition: Callable[[], Any], *, timeout: float = 30.0, what: str) -> Any:
    """Poll `condition` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def api(stack: Any) -> httpx.Client:
    token = stack.token(roles=["viewer", "operator", "approver", "admin"])
    with httpx.Client(
        base_url=stack.gateway_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    ) as client:
        yield client


def create_ready_draft(api: httpx.Client) -> str:
    body = {**ORDER, "external_ref": f"PO-{uuid.uuid4().hex[:10]}"}
    created = api.post("/draft-orders", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "NEW"
    draft_id = created.json()["id"]
    validated = api.post(f"/draft-orders/{draft_id}/validate")
    assert validated.status_code == 200, validated.text
    assert validated.json()["status"] == "READY", validated.text
    return draft_id


def assert_problem(response: httpx.Response, status: int, title: str, detail: str) -> None:
    """An RFC 9457 problem document whose `detail` is the sentence the quickstart shows."""
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["type"], body["title"], body["status"], body["detail"]) == (
        "about:blank",
        title,
        status,
        detail,
    )
    assert body["instance"].startswith("/draft-orders/")
    assert body["request_id"] == response.headers["x-request-id"]


def draft_status(stack: Any, draft_id: str) -> str:
    rows = stack.psql(f"SELECT status FROM draft_order WHERE id = '{draft_id}'")
    return rows[0][0]


def test_docs_list_the_approve_push_and_retry_routes(stack: Any) -> None:
    docs = httpx.get(f"{stack.gateway_url}/docs", timeout=10)
    assert docs.status_code == 200
    spec = httpx.get(f"{stack.gateway_url}/openapi.json", timeout=10).json()
    for path in (
        "/draft-orders/{draft_id}/approve",
        "/draft-orders/{draft_id}/push",
        "/draft-orders/{draft_id}/retry-push",
    ):
        assert any(p.replace("{id}", "{draft_id}") == path for p in spec["paths"]), path


def test_approve_push_replay_and_audit_as_in_the_quickstart(stack: Any, api: httpx.Client) -> None:
    draft_id = create_ready_draft(api)

    approved = api.post(f"/draft-orders/{draft_id}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["id"] == draft_id
    assert approved.json()["status"] == "APPROVED"
    assert approved.json()["approved_at"]
    [(status, approver, approved_at)] = stack.psql(
        f"SELECT status, approved_by_user_id, approved_at FROM draft_order WHERE id = '{draft_id}'"
    )
    assert (status, approver) == ("APPROVED", "user-1")
    assert approved_at is not None

    key = str(uuid.uuid4())
    first = api.post(f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "PUSHING"
    assert (first.json()["draft_status"], first.json()["export_status"]) == ("PUSHING", "PENDING")
    export_id = first.json()["erp_export_id"]

    replay = api.post(f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key})
    assert replay.status_code in (200, 202), replay.text
    assert replay.json()["erp_export_id"] == export_id
    assert replay.json()["status"] in ("PENDING", "SENT")
    assert replay.json()["export_status"] == replay.json()["status"]  # the export's state
    assert replay.json()["draft_status"] in ("PUSHING", "PUSHED")

    cached = redis.Redis.from_url(stack.redis_url).get(f"idempotency:{draft_id}:{key}")
    assert cached is not None and cached.decode() == export_id

    wait_for(lambda: draft_status(stack, draft_id) == "PUSHED", what="draft PUSHED")
    [(exp_status, storage_key, sent_at)] = stack.psql(
        "SELECT status, export_storage_key, sent_at FROM erp_export "
        f"WHERE draft_order_id = '{draft_id}'"
    )
    assert exp_status == "SENT" and storage_key and sent_at is not None

    inbox = Path(stack.dropzone_dir) / "inbox"
    files = [p for p in inbox.iterdir() if export_id in p.name]
    assert len(files) == 1, files
    assert "SKU-1" in files[0].read_text()

    after = api.post(f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key})
    assert after.json() == {
        "erp_export_id": export_id,
        "status": "SENT",
        "draft_status": "PUSHED",
        "export_status": "SENT",
    }

    def audit_actions() -> list[str]:
        entries = api.get("/audit-log", params={"entity_id": draft_id}).json()
        actions = [e["action"] for e in entries]
        return actions if "EXPORT_SENT" in actions else []

    actions = wait_for(audit_actions, what="EXPORT_SENT in the audit log")
    assert actions.index("DRAFT_APPROVED") < actions.index("DRAFT_PUSHED")
    assert actions.index("DRAFT_PUSHED") < actions.index("EXPORT_SENT")
    entries = api.get("/audit-log", params={"entity_id": draft_id}).json()
    assert all({"action", "actor_user_id", "created_at"} <= e.keys() for e in entries)


def test_retry_flow_after_a_failure_gives_two_exports(stack: Any, api: httpx.Client) -> None:
    draft_id = create_ready_draft(api)
    assert api.post(f"/draft-orders/{draft_id}/approve").status_code == 200
    first = api.post(f"/draft-orders/{draft_id}/push").json()["erp_export_id"]
    wait_for(lambda: draft_status(stack, draft_id) == "PUSHED", what="first push delivered")

    stack.psql(
        "UPDATE erp_export SET status = 'FAILED', error_json = '{\"error\": \"SFTP unreachable\"}' "
        f"WHERE id = '{first}'"
    )
    stack.psql(f"UPDATE draft_order SET status = 'ERROR' WHERE id = '{draft_id}'")

    retried = api.post(f"/draft-orders/{draft_id}/retry-push")
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "PUSHING"
    second = retried.json()["erp_export_id"]
    assert second != first

    wait_for(lambda: draft_status(stack, draft_id) == "PUSHED", what="retry delivered")
    rows = stack.psql(
        "SELECT id, status FROM erp_export "
        f"WHERE draft_order_id = '{draft_id}' ORDER BY created_at DESC"
    )
    assert [str(r[0]) for r in rows] == [second, first]
    assert [r[1] for r in rows] == ["SENT", "FAILED"]


def test_approve_of_a_draft_that_is_not_ready_is_409(api: httpx.Client) -> None:
    created = api.post("/draft-orders", json={**ORDER, "external_ref": f"PO-{uuid.uuid4()}"})
    draft_id = created.json()["id"]
    refused = api.post(f"/draft-orders/{draft_id}/approve")
    assert refused.status_code == 409
    assert_problem(refused, 409, "Conflict", "Draft must be READY")
    assert refused.json()["instance"] == f"/draft-orders/{draft_id}/approve"


def test_push_without_an_active_connector_is_400(stack: Any) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    token = stack.token(roles=["operator", "approver"], org=org)
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as other:
        draft_id = create_ready_draft(other)
        assert other.post(f"/draft-orders/{draft_id}/approve").status_code == 200
        refused = other.post(f"/draft-orders/{draft_id}/push")
    assert refused.status_code == 400
    assert_problem(refused, 400, "Bad Request", "No active ERP connector")
