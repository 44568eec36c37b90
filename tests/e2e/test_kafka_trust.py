"""The broker is a trust boundary: who may connect, produce and consume, tried as a
hostile integrator would against the running stack.

Every client logs in (SASL/SCRAM-SHA-512) and Kafka's own authorizer applies the ACL
table of orderflow_shared.messaging.acls. Each forged record below is refused by the
broker; afterwards a normal push through the API still reaches PUSHED with exactly one
file, and the forged export id never shows up anywhere.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from orderflow_shared.contracts import (
    DraftApprovedV1,
    DraftPushRequestedV1,
    ErpConnectionChangedV1,
    ExportSentV1,
    OrderLineSnapshot,
    OrderSnapshot,
)
from orderflow_shared.messaging.acls import INTEGRATION_GROUP_PREFIX, PUBLISHED_TOPICS
from orderflow_shared.messaging.envelope import Envelope

from tests.e2e.flow import Flow, wait_for

FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
AUTHORIZATION_REFUSED = (TopicAuthorizationFailedError, ClusterAuthorizationFailedError)


# --- forged records --------------------------------------------------------------------
def forged_push(org: str, draft_id: str, export_id: uuid.UUID) -> Envelope:
    """A push request for a draft nobody pushed, with lines the approver never saw."""
    now = datetime.now(UTC)
    order = OrderSnapshot(
        draft_id=uuid.UUID(draft_id),
        org_id=org,
        customer_id="C-EVIL",
        external_ref=f"FORGED-{export_id}",
        currency="EUR",
        total=Decimal("1.00"),
        approved_by_user_id="nobody",
        approved_at=now,
        created_at=now,
        lines=[
            OrderLineSnapshot(
                line_no=1,
                sku="SKU-EVIL",
                description="forged",
                quantity=Decimal("1"),
                unit="EA",
                unit_price=Decimal("1.00"),
                currency="EUR",
                line_total=Decimal("1.00"),
            )
        ],
    )
    data = DraftPushRequestedV1(
        draft_id=order.draft_id, erp_export_id=export_id, attempt=1, requested_at=now, order=order
    )
    return Envelope.wrap(data, source="evil", subject=draft_id, org_id=org, actor_id="evil")


def forged_approval(org: str, draft_id: str, _export_id: uuid.UUID) -> Envelope:
    data = DraftApprovedV1(
        draft_id=uuid.UUID(draft_id), approved_by_user_id="evil", approved_at=datetime.now(UTC)
    )
    return Envelope.wrap(data, source="evil", subject=draft_id, org_id=org, actor_id="evil")


def forged_sent(org: str, draft_id: str, export_id: uuid.UUID) -> Envelope:
    """`export.sent` for a file that was never delivered."""
    data = ExportSentV1(
        draft_id=uuid.UUID(draft_id),
        erp_export_id=export_id,
        export_storage_key=f"forged/{export_id}.csv",
        remote_path=f"/inbox/{export_id}.csv",
        checksum_sha256="0" * 64,
        size_bytes=1,
        attempts=1,
        sent_at=datetime.now(UTC),
    )
    return Envelope.wrap(data, source="evil", subject=draft_id, org_id=org, actor_id="evil")


def forged_connection_off(org: str, connection_id: str) -> Envelope:
    """Switches the organisation's connector off 'forever' (a far-future changed_at)."""
    data = ErpConnectionChangedV1(
        connection_id=uuid.UUID(connection_id),
        org_id=org,
        name="evil",
        connector_type="sftp_dropzone",
        is_active=False,
        change="deactivated",
        changed_at=FAR_FUTURE,
    )
    return Envelope.wrap(
        data, source="evil", subject=connection_id, org_id=org, actor_id="evil", key=connection_id
    )


# --- clients ---------------------------------------------------------------------------
async def _produce(options: dict[str, Any], envelope: Envelope, *, idempotent: bool) -> None:
    producer = AIOKafkaProducer(
        **options, enable_idempotence=idempotent, acks="all", request_timeout_ms=10_000
    )
    try:
        await producer.start()
        await asyncio.wait_for(
            producer.send_and_wait(
                envelope.topic,
                envelope.data,
                key=envelope.key.encode(),
                headers=envelope.kafka_headers(),
            ),
            timeout=30,
        )
    finally:
        await producer.stop()


def produce(options: dict[str, Any], envelope: Envelope, *, idempotent: bool = True) -> None:
    asyncio.run(_produce(options, envelope, idempotent=idempotent))


async def _consume(options: dict[str, Any], topic: str, group: str) -> int:
    """Join `group`, read `topic` from the start for a moment, commit; records read."""
    consumer = AIOKafkaConsumer(
        topic, **options, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        await consumer.start()
        seen = 0
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=500)
            seen += sum(len(records) for records in batch.values())
            if seen:
                break
        await consumer.commit()
        return seen
    finally:
        await consumer.stop()


def consume(options: dict[str, Any], topic: str, group: str) -> int:
    return asyncio.run(_consume(options, topic, group))


def wrong_password(options: dict[str, Any]) -> dict[str, Any]:
    return {**options, "sasl_plain_password": options["sasl_plain_password"] + "-guess"}


def no_credentials(stack: Any) -> dict[str, Any]:
    return {"bootstrap_servers": stack.kafka_bootstrap_servers}


# --- what still works afterwards -------------------------------------------------------
def files_of(stack: Any, export_id: str) -> list[str]:
    return [p.name for p in stack.inbox_dir.iterdir() if export_id in p.name]


def assert_a_normal_push_still_works(stack: Any, flow: Flow, draft_id: str) -> None:
    export_id = flow.push(draft_id)
    flow.wait_settled([draft_id], timeout=120)
    assert len(files_of(stack, export_id)) == 1
    rows = stack.psql(
        "SELECT count(*) FROM export.erp_export WHERE draft_order_id = %s", (draft_id,)
    )
    assert rows == [(1,)]


def assert_no_trace_of(stack: Any, forged_export: uuid.UUID) -> None:
    assert files_of(stack, str(forged_export)) == []
    assert stack.psql("SELECT count(*) FROM export.erp_export WHERE id = %s", (forged_export,)) == [
        (0,)
    ]


@pytest.fixture
def flow(stack: Any) -> Any:
    flow = Flow(stack)
    yield flow
    flow.close()


# --- who may connect -------------------------------------------------------------------
def test_a_client_without_credentials_cannot_even_list_the_topics(stack: Any) -> None:
    async def list_topics() -> list[str]:
        admin = AIOKafkaAdminClient(**no_credentials(stack), request_timeout_ms=5_000)
        try:
            await admin.start()
            return list(await admin.list_topics())
        finally:
            await admin.close()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(list_topics())
    assert "draft.created" in asyncio.run(_topics(stack.kafka_options("admin")))


async def _topics(options: dict[str, Any]) -> list[str]:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.parametrize("principal", ["admin", "draft-api", "integration"])
def test_a_wrong_password_is_refused(stack: Any, principal: str) -> None:
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_topics(wrong_password(stack.kafka_options(principal))))


# --- the integration principal ---------------------------------------------------------
def test_the_integration_principal_reads_every_published_topic_in_its_own_group(
    stack: Any, flow: Flow
) -> None:
    draft_id = flow.approved_draft()
    assert_a_normal_push_still_works(stack, flow, draft_id)  # every topic has records now
    options = stack.kafka_options("integration")
    group = f"{INTEGRATION_GROUP_PREFIX}e2e-{uuid.uuid4().hex[:8]}"
    for topic in ("draft.created", "draft.approved", "draft.push_requested", "export.sent"):
        assert topic in PUBLISHED_TOPICS
        assert consume(options, topic, group) > 0, topic


@pytest.mark.parametrize("group", ["draft-api", "export-service", "audit-service", "acme-erp"])
def test_the_integration_principal_cannot_use_another_group(stack: Any, group: str) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        consume(stack.kafka_options("integration"), "draft.created", group)


def test_the_integration_principal_cannot_read_the_dead_letters(stack: Any) -> None:
    group = f"{INTEGRATION_GROUP_PREFIX}e2e-{uuid.uuid4().hex[:8]}"
    with pytest.raises(TopicAuthorizationFailedError):
        consume(stack.kafka_options("integration"), "dead_letter", group)


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "plain"])
@pytest.mark.parametrize("topic", [*PUBLISHED_TOPICS, "dead_letter"])
def test_the_integration_principal_cannot_produce_anything(
    stack: Any, topic: str, idempotent: bool
) -> None:
    with pytest.raises(AUTHORIZATION_REFUSED):
        asyncio.run(_produce_raw(stack.kafka_options("integration"), topic, idempotent))


async def _produce_raw(options: dict[str, Any], topic: str, idempotent: bool) -> None:
    producer = AIOKafkaProducer(
        **options, enable_idempotence=idempotent, acks="all", request_timeout_ms=10_000
    )
    try:
        await producer.start()
        await asyncio.wait_for(producer.send_and_wait(topic, b"{}", key=b"k"), timeout=30)
    finally:
        await producer.stop()


# --- forged records with other credentials ---------------------------------------------
Forge = Callable[[str, str, uuid.UUID], Envelope]
FORGERIES: list[tuple[str, str, Forge]] = [
    ("no credentials", "draft.push_requested", forged_push),
    ("integration", "draft.push_requested", forged_push),
    ("audit-service", "draft.push_requested", forged_push),
    ("export-service", "draft.push_requested", forged_push),
    ("export-service", "draft.approved", forged_approval),
    ("draft-api", "export.sent", forged_sent),
    ("audit-service", "export.sent", forged_sent),
]


@pytest.mark.parametrize(
    ("principal", "topic", "forge"), FORGERIES, ids=[f"{p}->{t}" for p, t, _ in FORGERIES]
)
def test_a_forged_record_is_refused_and_a_normal_push_still_works(
    stack: Any, flow: Flow, principal: str, topic: str, forge: Forge
) -> None:
    draft_id = flow.approved_draft()
    forged_export = uuid.uuid4()
    envelope = forge(flow.org, draft_id, forged_export)
    assert envelope.topic == topic
    if principal == "no credentials":
        with pytest.raises(KafkaConnectionError):
            produce(no_credentials(stack), envelope)
    else:
        with pytest.raises(AUTHORIZATION_REFUSED):
            produce(stack.kafka_options(principal), envelope)
    status = stack.psql("SELECT status FROM draft.draft_order WHERE id = %s", (draft_id,))
    assert status == [("APPROVED",)]
    assert_a_normal_push_still_works(stack, flow, draft_id)
    assert_no_trace_of(stack, forged_export)


@pytest.mark.parametrize("principal", ["draft-api", "audit-service", "integration"])
def test_only_export_service_may_switch_a_connector_off(
    stack: Any, flow: Flow, principal: str
) -> None:
    (connection_id,) = stack.psql(
        "SELECT id::text FROM export.erp_connection WHERE org_id = %s", (flow.org,)
    )[0]
    with pytest.raises(AUTHORIZATION_REFUSED):
        produce(stack.kafka_options(principal), forged_connection_off(flow.org, connection_id))
    wait_for(
        lambda: (
            stack.psql(
                "SELECT count(*) FROM draft.erp_connector WHERE org_id = %s AND is_active",
                (flow.org,),
            )
            == [(1,)]
        ),
        timeout=10,
        what="the connector to stay active",
    )
    assert_a_normal_push_still_works(stack, flow, flow.approved_draft())
