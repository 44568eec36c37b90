"""Export results and connector changes: applied once, through the real broker too."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from draft_api.bootstrap import make_app
from draft_api.entrypoints.consumer import apply
from orderflow_shared.contracts import (
    ErpConnectionChangedV1,
    EventData,
    ExportFailedV1,
    ExportSentV1,
    Topic,
)
from orderflow_shared.messaging.envelope import Envelope

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def wrap(api: Any, data: EventData, subject: str, org: str | None = None) -> Envelope:
    return Envelope.wrap(
        data,
        source="/orderflow/export-service",
        subject=subject,
        org_id=org or api.org,
        actor_id="system:export-service",
    )


def sent(api: Any, draft_id: str, export_id: str) -> Envelope:
    return wrap(
        api,
        ExportSentV1(
            draft_id=uuid.UUID(draft_id),
            erp_export_id=uuid.UUID(export_id),
            export_storage_key="exports/x.csv",
            remote_path="/inbox/x.csv",
            checksum_sha256="a" * 64,
            size_bytes=42,
            attempts=1,
            sent_at=datetime.now(UTC),
        ),
        draft_id,
    )


def failed(api: Any, draft_id: str, export_id: str) -> Envelope:
    return wrap(
        api,
        ExportFailedV1(
            draft_id=uuid.UUID(draft_id),
            erp_export_id=uuid.UUID(export_id),
            error_code="sftp_unreachable",
            error_message="SFTP unreachable",
            attempts=5,
            permanent=False,
            failed_at=datetime.now(UTC),
        ),
        draft_id,
    )


def connection(
    api: Any, connection_id: uuid.UUID, active: bool, at: datetime, org: str | None = None
) -> Envelope:
    return wrap(
        api,
        ErpConnectionChangedV1(
            connection_id=connection_id,
            org_id=org or api.org,
            name="Demo ERP dropzone",
            connector_type="sftp_dropzone",
            is_active=active,
            change="activated" if active else "deactivated",
            changed_at=at,
        ),
        str(connection_id),
        org,
    )


async def draft(api: Any, path: str) -> dict[str, Any]:
    response = await api.client.get(path, headers=api.headers())
    return dict(response.json())


async def test_failed_then_retried_then_sent(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    first = (await api.push(draft_id)).json()["erp_export_id"]

    await apply(api.services.uow_factory, failed(api, draft_id, first))
    state = await draft(api, f"/draft-orders/{draft_id}")
    assert state["status"] == "ERROR"
    assert state["exports"][0]["status"] == "FAILED"
    assert state["exports"][0]["error"]["error_message"] == "SFTP unreachable"

    second = (await api.push(draft_id, retry=True)).json()["erp_export_id"]
    await apply(api.services.uow_factory, sent(api, draft_id, second))
    state = await draft(api, f"/draft-orders/{draft_id}")
    assert state["status"] == "PUSHED"
    assert [e["status"] for e in state["exports"]] == ["FAILED", "SENT"]


async def test_a_result_for_an_older_export_changes_only_that_attempt(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    first = (await api.push(draft_id)).json()["erp_export_id"]
    api.db.rows("UPDATE draft.draft_order SET status = 'ERROR' WHERE id = %s", (draft_id,))
    await api.push(draft_id, retry=True)

    await apply(api.services.uow_factory, sent(api, draft_id, first))
    state = await draft(api, f"/draft-orders/{draft_id}")
    assert state["status"] == "PUSHING"
    assert [e["status"] for e in state["exports"]] == ["SENT", "PENDING"]


async def test_a_redelivered_event_is_applied_once(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    export_id = (await api.push(draft_id)).json()["erp_export_id"]
    event = failed(api, draft_id, export_id)
    await apply(api.services.uow_factory, event)
    api.db.rows("UPDATE draft.draft_order SET status = 'PUSHING' WHERE id = %s", (draft_id,))

    await apply(api.services.uow_factory, event)
    state = await draft(api, f"/draft-orders/{draft_id}")
    assert state["status"] == "PUSHING"  # the repeat did not set ERROR again
    assert api.db.scalar("SELECT count(*) FROM draft.inbox WHERE event_id = %s", (event.id,)) == 1


async def test_an_event_from_another_org_changes_nothing(api: Any) -> None:
    api.connect_erp()
    draft_id = await api.approved()
    export_id = (await api.push(draft_id)).json()["erp_export_id"]
    forged = failed(api, draft_id, export_id)
    forged = Envelope.wrap(
        forged.parse(), source=forged.source, subject=draft_id, org_id="other", actor_id="u"
    )
    await apply(api.services.uow_factory, forged)
    assert (await draft(api, f"/draft-orders/{draft_id}"))["status"] == "PUSHING"


async def test_connector_changes_apply_in_the_order_they_arrive(api: Any) -> None:
    # the topic's order per connection is the truth; a changed_at far ahead holds no sway
    connection_id = uuid.uuid4()
    far_future = connection(api, connection_id, False, T0 + timedelta(days=365 * 500))
    await apply(api.services.uow_factory, far_future)
    rows = api.db.rows(
        "SELECT is_active FROM draft.erp_connector WHERE org_id = %s AND connection_id = %s",
        (api.org, connection_id),
    )
    assert rows == [(False,)]
    draft_id = await api.approved()
    refused = await api.push(draft_id)
    assert refused.json()["detail"] == "No active ERP connector"

    await apply(api.services.uow_factory, connection(api, connection_id, True, T0))
    assert (await api.push(draft_id)).status_code == 202


@pytest.fixture
async def kafka_app(infra: Any, db: Any, make_settings: Any) -> Any:
    settings = make_settings(
        db,
        consumer_group_id=f"draft-api-test-{uuid.uuid4().hex[:8]}",
        outbox_poll_interval_seconds=0.2,
    )
    app = make_app(settings, roles=["relay", "consume"])
    async with app.router.lifespan_context(app):
        yield app


async def produce(infra: Any, envelope: Envelope) -> None:
    # export-service's topics: produced as the admin (test plumbing)
    producer = AIOKafkaProducer(**infra.kafka_options("admin"))
    await producer.start()
    try:
        await producer.send_and_wait(
            envelope.topic,
            envelope.data,
            key=envelope.key.encode(),
            headers=envelope.kafka_headers(),
        )
    finally:
        await producer.stop()


async def test_through_kafka_connector_push_request_and_result(
    api: Any, kafka_app: Any, infra: Any, eventually: Any
) -> None:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=kafka_app), base_url="http://draft-api"
    )
    api.client = client
    connection_id = uuid.uuid4()
    await produce(infra, connection(api, connection_id, True, datetime.now(UTC)))
    await eventually(
        lambda: api.db.scalar(
            "SELECT count(*) FROM draft.erp_connector WHERE org_id = %s AND is_active",
            (api.org,),
        ),
        what="the connector read model",
    )

    draft_id = await api.approved()
    export_id = (await api.push(draft_id, key=str(uuid.uuid4()))).json()["erp_export_id"]

    reader = AIOKafkaConsumer(
        Topic.DRAFT_PUSH_REQUESTED,
        **infra.kafka_options("admin"),
        group_id=f"test-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    try:
        found: dict[str, Any] = {}

        async def seen() -> bool:
            batch = await reader.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.key == draft_id.encode():
                        found["headers"] = {k: v.decode() for k, v in record.headers}
                        found["value"] = json.loads(record.value)
            return bool(found)

        deadline = time.monotonic() + 60
        while not await seen():
            assert time.monotonic() < deadline, "draft.push_requested never reached Kafka"
    finally:
        await reader.stop()
    assert found["headers"]["ce_type"] == "orderflow.draft.push_requested.v1"
    assert found["headers"]["ce_orgid"] == api.org
    assert found["headers"]["ce_actorid"] == "user-1"
    assert found["value"]["erp_export_id"] == export_id

    await produce(infra, sent(api, draft_id, export_id))
    await eventually(
        lambda: api.db.scalar(
            "SELECT status = 'PUSHED' FROM draft.draft_order WHERE id = %s", (draft_id,)
        ),
        what="PUSHED after export.sent",
    )
    await client.aclose()
