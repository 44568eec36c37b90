"""The REST contract of draft-api against real Postgres and Redis (app in-process)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis


async def test_create_returns_the_new_draft_with_decimals_as_strings(api: Any) -> None:
    response = await api.client.post(
        "/draft-orders",
        json={
            "customer_id": "C-1001",
            "external_ref": "PO-4711",
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
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/draft-orders/{body['id']}"
    assert body["status"] == "NEW" and body["org_id"] == api.org
    line = body["lines"][0]
    assert (line["quantity"], line["unit_price"], line["line_total"]) == ("3", "9.50", "28.50")
    assert body["total"] == "28.50" and body["currency"] == "EUR"
    assert body["exports"] == []
    event = api.db.rows(
        "SELECT topic, key, headers FROM draft.outbox WHERE key = %s", (body["id"],)
    )
    assert [(t, k) for t, k, _ in event] == [("draft.created", body["id"])]
    headers = dict(event[0][2])
    assert headers["ce_source"] == "/orderflow/draft-api"
    assert (headers["ce_orgid"], headers["ce_actorid"], headers["ce_subject"]) == (
        api.org,
        "user-1",
        body["id"],
    )


async def test_get_and_list_are_scoped_to_the_org_and_filter_by_status(api: Any) -> None:
    ready = await api.ready()
    fresh = (await api.create())["id"]
    got = await api.client.get(f"/draft-orders/{ready}", headers=api.headers(("viewer",)))
    assert got.status_code == 200 and got.json()["status"] == "READY"

    listed = await api.client.get(
        "/draft-orders", params={"status": "READY"}, headers=api.headers(("viewer",))
    )
    assert [d["id"] for d in listed.json()["items"]] == [ready]
    everything = await api.client.get("/draft-orders", headers=api.headers(("viewer",)))
    assert {d["id"] for d in everything.json()["items"]} == {ready, fresh}
    assert everything.json()["total"] == 2

    page = await api.client.get(
        "/draft-orders", params={"limit": 1, "offset": 1}, headers=api.headers()
    )
    assert len(page.json()["items"]) == 1 and page.json()["total"] == 2


async def test_validation_lists_issues_and_an_edit_sends_the_draft_back_to_new(api: Any) -> None:
    draft = await api.create(
        lines=[
            {"sku": "A", "quantity": "0", "unit": "XYZ", "unit_price": 1, "currency": "EUR"},
            {"sku": "B", "quantity": 1, "unit": "KGM", "unit_price": 2, "currency": "USD"},
        ]
    )
    validated = await api.client.post(
        f"/draft-orders/{draft['id']}/validate", headers=api.headers()
    )
    assert validated.status_code == 200
    assert validated.json()["status"] == "NEEDS_REVIEW"
    assert {(i["field"], i["code"]) for i in validated.json()["issues"]} == {
        ("lines[0].quantity", "quantity_not_positive"),
        ("lines[0].unit", "unit_unknown"),
        ("lines", "mixed_currencies"),
    }
    edited = await api.client.patch(
        f"/draft-orders/{draft['id']}",
        json={
            "lines": [{"sku": "A", "quantity": 2, "unit": "EA", "unit_price": 1, "currency": "EUR"}]
        },
        headers=api.headers(),
    )
    assert edited.status_code == 200 and edited.json()["status"] == "NEW"
    again = await api.client.post(f"/draft-orders/{draft['id']}/validate", headers=api.headers())
    assert again.json() == {"id": draft["id"], "status": "READY", "issues": []}


async def test_a_duplicate_external_ref_within_the_org_needs_review(api: Any) -> None:
    await api.create(external_ref="PO-DUP")
    second = await api.create(external_ref="PO-DUP")
    validated = await api.client.post(
        f"/draft-orders/{second['id']}/validate", headers=api.headers()
    )
    assert [i["code"] for i in validated.json()["issues"]] == ["external_ref_duplicate"]


async def test_approve_records_who_and_when_as_the_quickstart_shows(api: Any) -> None:
    draft_id = await api.ready()
    response = await api.client.post(
        f"/draft-orders/{draft_id}/approve", headers=api.headers(("approver",), sub="boss-7")
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "status", "approved_at"}
    assert (body["id"], body["status"]) == (draft_id, "APPROVED")
    row = api.db.rows(
        "SELECT id, status, approved_by_user_id, approved_at FROM draft_order WHERE id = %s",
        (draft_id,),
    )
    assert row[0][1:3] == ("APPROVED", "boss-7") and row[0][3] is not None


async def test_the_troubleshooting_errors_have_the_documented_details(api: Any) -> None:
    fresh = (await api.create())["id"]
    approve = await api.client.post(f"/draft-orders/{fresh}/approve", headers=api.headers())
    assert (approve.status_code, approve.json()["detail"]) == (409, "Draft must be READY")
    push = await api.push(fresh)
    assert (push.status_code, push.json()["detail"]) == (409, "Draft must be APPROVED")
    retry = await api.push(fresh, retry=True)
    assert (retry.status_code, retry.json()["detail"]) == (409, "Draft must be in ERROR")

    approved = await api.approved()
    no_erp = await api.push(approved, key=str(uuid.uuid4()))
    assert (no_erp.status_code, no_erp.json()["detail"]) == (400, "No active ERP connector")
    api.connect_erp(active=False)
    inactive = await api.push(approved)
    assert inactive.status_code == 400
    assert api.attempts(approved) == 0 and api.push_events(approved) == 0


async def test_push_replay_and_retry_follow_the_quickstart(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    key = str(uuid.uuid4())

    first = await api.push(draft_id, key=key)
    assert first.status_code == 202
    export_id = first.json()["erp_export_id"]
    assert first.json() == {
        "erp_export_id": export_id,
        "status": "PUSHING",
        "draft_status": "PUSHING",
        "export_status": "PENDING",
    }
    cached = redis.Redis.from_url(api.infra.redis_url).get(f"idempotency:{draft_id}:{key}")
    assert cached == export_id.encode()

    replay = await api.push(draft_id, key=key)
    assert replay.status_code == 202
    assert replay.json() == {
        "erp_export_id": export_id,
        "status": "PENDING",  # on a replay: the export's status
        "draft_status": "PUSHING",
        "export_status": "PENDING",
    }
    assert replay.headers["idempotent-replayed"] == "true"

    api.db.rows("UPDATE draft.draft_order SET status = 'ERROR' WHERE id = %s", (draft_id,))
    retry = await api.push(draft_id, retry=True)
    assert retry.status_code == 202
    new_id = retry.json()["erp_export_id"]
    assert new_id != export_id and retry.json()["status"] == "PUSHING"

    draft = (await api.client.get(f"/draft-orders/{draft_id}", headers=api.headers())).json()
    assert draft["status"] == "PUSHING" and draft["current_export_id"] == new_id
    assert [(e["erp_export_id"], e["attempt"]) for e in draft["exports"]] == [
        (export_id, 1),
        (new_id, 2),
    ]
    payloads = api.db.rows(
        "SELECT payload FROM draft.outbox WHERE topic = 'draft.push_requested' AND key = %s "
        "ORDER BY id",
        (draft_id,),
    )
    events = [json.loads(bytes(p)) for (p,) in payloads]
    assert [(e["attempt"], e["is_retry"]) for e in events] == [(1, False), (2, True)]
    order = events[0]["order"]
    assert order["customer_id"] == "C-1001" and order["approved_by_user_id"] == "boss-1"
    assert order["lines"][0]["sku"] == "SKU-1" and order["total"] == "28.50"


async def test_health_metrics_and_docs_need_no_token(api: Any) -> None:
    assert (await api.client.get("/livez")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["redis"] == "ok"
    assert (await api.client.get("/metrics")).status_code == 200
    spec = (await api.client.get("/openapi.json")).json()
    push = spec["paths"]["/draft-orders/{draft_id}/push"]["post"]
    assert {"202", "400", "401", "403", "404", "409", "422"} <= set(push["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in push["parameters"])
    assert "Idempotent-Replayed" in push["responses"]["202"]["headers"]
