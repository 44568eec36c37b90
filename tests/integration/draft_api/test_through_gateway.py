"""The quickstart's steps 1-3 and its troubleshooting answers through the gateway (`stack`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import redis


def wait_status(http: httpx.Client, draft_id: str, wanted: set[str]) -> str:
    deadline = time.monotonic() + 60
    while True:
        status = str(http.get(f"/draft-orders/{draft_id}").json()["status"])
        if status in wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_approve_push_replay_through_the_gateway(stack: Any) -> None:
    with httpx.Client(base_url=stack.gateway_url, headers=stack.auth_headers(), timeout=30) as http:
        created = http.post(
            "/draft-orders",
            json={
                "customer_id": "C-1001",
                "external_ref": f"PO-{uuid.uuid4().hex[:8]}",
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
            },
        )
        assert created.status_code == 201, created.text
        draft_id = created.json()["id"]

        early = http.post(f"/draft-orders/{draft_id}/approve")
        assert (early.status_code, early.json()["detail"]) == (409, "Draft must be READY")
        assert http.post(f"/draft-orders/{draft_id}/validate").json()["status"] == "READY"

        approved = http.post(f"/draft-orders/{draft_id}/approve")
        assert approved.status_code == 200
        assert approved.json()["status"] == "APPROVED" and approved.json()["approved_at"]
        [(status, approver)] = stack.psql(
            "SELECT status, approved_by_user_id FROM draft.draft_order WHERE id = %s",
            (draft_id,),
        )
        assert (status, approver) == ("APPROVED", "user-1")

        key = str(uuid.uuid4())
        pushed = http.post(f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key})
        assert pushed.status_code == 202
        export_id = pushed.json()["erp_export_id"]
        assert pushed.json() == {
            "erp_export_id": export_id,
            "status": "PUSHING",
            "draft_status": "PUSHING",
            "export_status": "PENDING",
        }
        replay = http.post(f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key})
        assert replay.json()["erp_export_id"] == export_id
        assert replay.json()["status"] in {"PENDING", "SENT"}
        assert replay.json()["export_status"] == replay.json()["status"]
        cache = redis.Redis.from_url(stack.redis_url)
        assert cache.get(f"idempotency:{draft_id}:{key}") == export_id.encode()

        assert wait_status(http, draft_id, {"PUSHED", "ERROR"}) == "PUSHED"
        done = http.post(f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key})
        assert done.json() == {
            "erp_export_id": export_id,
            "status": "SENT",
            "draft_status": "PUSHED",
            "export_status": "SENT",
        }


def test_push_without_a_connector_is_400_through_the_gateway(stack: Any) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    headers = stack.auth_headers(org=org)
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=30) as http:
        draft_id = http.post(
            "/draft-orders",
            json={
                "customer_id": "C-1",
                "lines": [
                    {"sku": "S", "quantity": 1, "unit": "EA", "unit_price": 1, "currency": "EUR"}
                ],
            },
        ).json()["id"]
        http.post(f"/draft-orders/{draft_id}/validate")
        http.post(f"/draft-orders/{draft_id}/approve")
        response = http.post(f"/draft-orders/{draft_id}/push")
        assert (response.status_code, response.json()["detail"]) == (
            400,
            "No active ERP connector",
        )
