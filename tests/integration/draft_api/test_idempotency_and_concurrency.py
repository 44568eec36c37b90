"""Idempotency-Key and row locking under concurrency, with Redis up and with Redis down."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from draft_api.bootstrap import make_app
from draft_api.entrypoints.consumer import apply
from orderflow_shared.contracts import ExportSentV1
from orderflow_shared.messaging.envelope import Envelope

IN_FLIGHT = "A request with this Idempotency-Key is still being processed"


def one_export(api: Any, draft_id: str) -> None:
    assert api.attempts(draft_id) == 1
    assert api.push_events(draft_id) == 1


async def test_twenty_concurrent_pushes_with_one_key_make_one_export(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    key = str(uuid.uuid4())

    responses = await asyncio.gather(*(api.push(draft_id, key=key) for _ in range(20)))

    accepted = [r.json() for r in responses if r.status_code == 202]
    refused = [r.json() for r in responses if r.status_code != 202]
    assert accepted, [r.text for r in responses]
    assert len({a["erp_export_id"] for a in accepted}) == 1
    assert sum(a["status"] == "PUSHING" for a in accepted) == 1
    assert all(r["detail"] == IN_FLIGHT for r in refused)
    assert {r.status_code for r in responses} <= {202, 409}
    one_export(api, draft_id)


async def test_twenty_concurrent_pushes_with_redis_down_still_make_one_export(
    api: Any,
) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    key = str(uuid.uuid4())
    api.infra.kill("redis")
    try:
        responses = await asyncio.gather(*(api.push(draft_id, key=key) for _ in range(20)))
        ready = await api.client.get("/readyz")
    finally:
        api.infra.start("redis")

    assert {r.status_code for r in responses} <= {202, 409}, [r.text for r in responses]
    accepted = [r.json() for r in responses if r.status_code == 202]
    assert len({a["erp_export_id"] for a in accepted}) == 1
    assert sum(a["status"] == "PUSHING" for a in accepted) == 1
    one_export(api, draft_id)
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "fail"

    replay = await api.push(draft_id, key=key)  # Redis is back, but never saw this key
    assert replay.status_code == 202
    assert replay.json()["erp_export_id"] == accepted[0]["erp_export_id"]
    one_export(api, draft_id)


async def test_replay_after_completion_reports_the_export_status_now(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    key = "replay-" + uuid.uuid4().hex
    first = (await api.push(draft_id, key=key)).json()
    sent = Envelope.wrap(
        ExportSentV1(
            draft_id=uuid.UUID(draft_id),
            erp_export_id=uuid.UUID(first["erp_export_id"]),
            export_storage_key="k",
            remote_path="/inbox/x.csv",
            checksum_sha256="0" * 64,
            size_bytes=10,
            attempts=1,
            sent_at=datetime.now(UTC),
        ),
        source="/orderflow/export-service",
        subject=draft_id,
        org_id=api.org,
        actor_id="system:export-service",
    )
    await apply(api.services.uow_factory, sent)

    replay = await api.push(draft_id, key=key)
    assert replay.status_code == 202
    assert replay.json() == {
        "erp_export_id": first["erp_export_id"],
        "status": "SENT",
        "draft_status": "PUSHED",
        "export_status": "SENT",
    }
    draft = (await api.client.get(f"/draft-orders/{draft_id}", headers=api.headers())).json()
    assert draft["status"] == "PUSHED"
    one_export(api, draft_id)


async def test_the_same_key_on_a_different_request_is_422(api: Any) -> None:
    api.connect_erp()
    first, second = await api.approved(), await api.approved()
    key = str(uuid.uuid4())
    assert (await api.push(first, key=key)).status_code == 202

    other_draft = await api.push(second, key=key)
    assert other_draft.status_code == 422
    assert (
        other_draft.json()["detail"] == "Idempotency-Key was already used for a different request"
    )
    other_operation = await api.push(first, key=key, retry=True)
    assert other_operation.status_code == 422
    assert api.attempts(second) == 0
    one_export(api, first)


async def test_a_malformed_key_is_400_and_changes_nothing(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    for bad in ("has space", "x" * 300, "semi;colon"):
        response = await api.push(draft_id, key=bad)
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["detail"]
    assert api.attempts(draft_id) == 0


async def test_an_expired_key_may_be_used_again(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    key = str(uuid.uuid4())
    first = (await api.push(draft_id, key=key)).json()
    api.db.rows("UPDATE draft.idempotency_key SET expires_at = now() - interval '1 minute'")
    api.db.rows("UPDATE draft.draft_order SET status = 'ERROR' WHERE id = %s", (draft_id,))

    retry = await api.push(draft_id, key=key, retry=True)
    assert retry.status_code == 202
    assert retry.json()["erp_export_id"] != first["erp_export_id"]
    again = await api.push(draft_id, key=key, retry=True)
    assert again.json()["erp_export_id"] == retry.json()["erp_export_id"]


async def test_two_concurrent_approves_one_wins_the_other_gets_409(api: Any) -> None:
    draft_id = await api.ready()
    responses = await asyncio.gather(
        *(
            api.client.post(f"/draft-orders/{draft_id}/approve", headers=api.headers(sub=s))
            for s in ("boss-a", "boss-b")
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.json()["detail"] == "Draft must be READY"
    assert (
        api.db.scalar(
            "SELECT count(*) FROM draft.outbox WHERE topic = 'draft.approved' AND key = %s",
            (draft_id,),
        )
        == 1
    )


async def test_two_concurrent_pushes_without_a_key_one_wins_the_other_gets_409(
    api: Any,
) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    responses = await asyncio.gather(api.push(draft_id), api.push(draft_id))
    assert sorted(r.status_code for r in responses) == [202, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.json()["detail"] == "Draft must be APPROVED"
    one_export(api, draft_id)


async def test_a_row_lock_held_too_long_is_503_not_500(api: Any, make_settings: Any) -> None:
    draft_id = await api.ready()
    app = make_app(make_settings(api.db, db_lock_timeout_ms=300))
    with psycopg.connect(api.db.libpq) as blocker:
        blocker.execute("SELECT 1 FROM draft.draft_order WHERE id = %s FOR UPDATE", (draft_id,))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                response = await client.post(
                    f"/draft-orders/{draft_id}/approve", headers=api.headers()
                )
        blocker.rollback()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["detail"] == "Database busy or unavailable, try again shortly"
    after = await api.client.post(f"/draft-orders/{draft_id}/approve", headers=api.headers())
    assert after.status_code == 200
