"""Consumers check what they can: hostile content produced ON KAFKA with the right
service's credentials (the broker lets it through; the consumers must not be fooled).

Each forged record is produced directly to the broker as the principal of the service
it impersonates, and must have no effect: no file, no status change, no connector
frozen, no entry in an organisation's audit chain. Afterwards a normal push through
the API still reaches PUSHED with exactly one file.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from orderflow_shared.contracts import (
    DraftPushRequestedV1,
    ErpConnectionChangedV1,
    ExportSentV1,
    OrderLineSnapshot,
    OrderSnapshot,
    Topic,
)
from orderflow_shared.messaging.envelope import Envelope

from tests.e2e.flow import Flow, wait_for

pytestmark = pytest.mark.stack

FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)
UNTRUSTED_ORG = "_untrusted"


async def _produce(options: dict[str, Any], envelope: Envelope) -> None:
    producer = AIOKafkaProducer(**options, enable_idempotence=True, acks="all")
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


def produce_as(stack: Any, principal: str, envelope: Envelope) -> None:
    asyncio.run(_produce(stack.kafka_options(principal), envelope))


async def _dead_letter_reason(options: dict[str, Any], event_id: uuid.UUID) -> str | None:
    consumer = AIOKafkaConsumer(
        Topic.DEAD_LETTER,
        **options,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while loop.time() < end:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers}
                    if headers.get("ce_id") == str(event_id) and "dlt_reason" in headers:
                        return headers["dlt_reason"]
        return None
    finally:
        await consumer.stop()


def dead_letter_reason(stack: Any, event_id: uuid.UUID) -> str | None:
    return asyncio.run(_dead_letter_reason(stack.kafka_options("admin"), event_id))


def files_of(stack: Any, export_id: str) -> list[str]:
    return [p.name for p in stack.inbox_dir.iterdir() if export_id in p.name]


def assert_a_normal_push_still_works(stack: Any, flow: Flow, draft_id: str) -> None:
    export_id = flow.push(draft_id)
    flow.wait_settled([draft_id], timeout=120)
    assert len(files_of(stack, export_id)) == 1
    assert stack.psql(
        "SELECT count(*) FROM export.erp_export WHERE draft_order_id = %s", (draft_id,)
    ) == [(1,)]


def audit_orgs_of(stack: Any, event_id: uuid.UUID) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in stack.psql(
            "SELECT org_id, action FROM audit.audit_log WHERE event_id = %s", (event_id,)
        )
    ]


def audited_as_untrusted(stack: Any, event_id: uuid.UUID) -> None:
    found = wait_for(lambda: audit_orgs_of(stack, event_id), timeout=60, what="the audit entry")
    assert found == [(UNTRUSTED_ORG, "UNTRUSTED_EVENT")]


def audit_caught_up(stack: Any, orgs: list[str]) -> None:
    """Wait until every event the orgs' services published so far is in the audit log
    (the ingest gathers a live load in batches, so it may lag behind by one)."""

    def missing() -> int:
        return int(
            stack.psql(
                "SELECT count(*) FROM (SELECT event_id, headers FROM draft.outbox"
                " UNION ALL SELECT event_id, headers FROM export.outbox) o"
                " WHERE o.headers @> ANY(%s::jsonb[])"
                " AND NOT EXISTS (SELECT 1 FROM audit.audit_log a WHERE a.event_id = o.event_id)",
                ([json.dumps([["ce_orgid", org]]) for org in orgs],),
            )[0][0]
        )

    wait_for(lambda: missing() == 0, timeout=60, what="the audit to catch up with the orgs")


def order_of(org: str, draft_id: str) -> OrderSnapshot:
    now = datetime.now(UTC)
    return OrderSnapshot(
        draft_id=uuid.UUID(draft_id),
        org_id=org,
        customer_id="C-EVIL",
        external_ref="FORGED",
        currency="EUR",
        total=Decimal("1.00"),
        approved_by_user_id="nobody",
        approved_at=now,
        created_at=now,
        lines=[
            OrderLineSnapshot(
                line_no=1,
                sku="SKU-EVIL",
                description='=HYPERLINK("http://evil.example")',
                quantity=Decimal("1"),
                unit="EA",
                unit_price=Decimal("1.00"),
                currency="EUR",
                line_total=Decimal("1.00"),
            )
        ],
    )


def connection_id_of(flow: Flow) -> str:
    listed = flow.call("GET", "/erp-connections").json()
    (active,) = [c for c in listed if c["is_active"]]
    return str(active["id"])


@pytest.fixture
def flows(stack: Any) -> Any:
    victim, attacker = Flow(stack), Flow(stack)
    yield victim, attacker
    victim.close()
    attacker.close()


def test_a_push_request_whose_envelope_org_is_not_the_orders_is_not_delivered(
    stack: Any, flows: Any
) -> None:
    victim, attacker = flows
    draft_id = victim.approved_draft()
    export_id = uuid.uuid4()
    # the attacker org's envelope around the victim's order (draft-api's credentials)
    forged = Envelope.wrap(
        DraftPushRequestedV1(
            draft_id=uuid.UUID(draft_id),
            erp_export_id=export_id,
            attempt=1,
            requested_at=datetime.now(UTC),
            order=order_of(victim.org, draft_id),
        ),
        source="/orderflow/draft-api",
        subject=draft_id,
        org_id=attacker.org,
        actor_id="mallory",
    )
    produce_as(stack, "draft-api", forged)

    reason = dead_letter_reason(stack, forged.id)
    assert reason is not None and reason.startswith("refused: envelope org")
    assert stack.psql("SELECT count(*) FROM export.erp_export WHERE id = %s", (export_id,)) == [
        (0,)
    ]
    assert files_of(stack, str(export_id)) == []
    audited_as_untrusted(stack, forged.id)
    assert victim.statuses([draft_id])["APPROVED"] == 1
    assert_a_normal_push_still_works(stack, victim, draft_id)


def test_an_export_sent_for_an_export_the_draft_never_had_changes_nothing(
    stack: Any, flows: Any
) -> None:
    victim, _ = flows
    draft_id = victim.approved_draft()
    forged = Envelope.wrap(
        ExportSentV1(
            draft_id=uuid.UUID(draft_id),
            erp_export_id=uuid.uuid4(),
            export_storage_key="forged.csv",
            remote_path="/inbox/forged.csv",
            checksum_sha256="0" * 64,
            size_bytes=1,
            attempts=1,
            sent_at=datetime.now(UTC),
        ),
        source="/orderflow/export-service",
        subject=draft_id,
        org_id=victim.org,
        actor_id="system:export-service",
    )
    produce_as(stack, "export-service", forged)
    # draft-api read it once its inbox has the event id (then it decided)
    wait_for(
        lambda: stack.psql("SELECT count(*) FROM draft.inbox WHERE event_id = %s", (forged.id,))[0][
            0
        ],
        timeout=60,
        what="draft-api to consume the forged export.sent",
    )
    assert victim.statuses([draft_id])["APPROVED"] == 1
    assert_a_normal_push_still_works(stack, victim, draft_id)


def test_an_export_sent_for_a_failed_export_leaves_the_draft_retryable(stack: Any) -> None:
    flow = Flow(stack, connector=False)
    try:
        bad_pin = {"host_key_fingerprint": "SHA256:" + "A" * 43}
        created = flow.call("POST", "/erp-connections", json=_sftp_body(stack, **bad_pin))
        assert created.status_code == 201, created.text
        connection_id = str(created.json()["id"])
        wait_for(
            lambda: stack.psql(
                "SELECT count(*) FROM draft.erp_connector WHERE org_id = %s AND is_active",
                (flow.org,),
            )[0][0],
            timeout=60,
            what="draft-api to learn the connection",
        )
        draft_id = flow.approved_draft()
        export_id = flow.push(draft_id)
        flow.wait_settled([draft_id], timeout=120, final=("ERROR",))  # host key mismatch
        forged = Envelope.wrap(
            ExportSentV1(
                draft_id=uuid.UUID(draft_id),
                erp_export_id=uuid.UUID(export_id),
                export_storage_key="forged.csv",
                remote_path="/inbox/forged.csv",
                checksum_sha256="0" * 64,
                size_bytes=1,
                attempts=1,
                sent_at=datetime.now(UTC),
            ),
            source="/orderflow/export-service",
            subject=draft_id,
            org_id=flow.org,
            actor_id="system:export-service",
        )
        produce_as(stack, "export-service", forged)
        wait_for(
            lambda: stack.psql(
                "SELECT count(*) FROM draft.inbox WHERE event_id = %s", (forged.id,)
            )[0][0],
            timeout=60,
            what="draft-api to consume the forged export.sent",
        )
        assert flow.statuses([draft_id])["ERROR"] == 1
        fixed = flow.call(
            "PATCH",
            f"/erp-connections/{connection_id}",
            json={"sftp": {"host_key_fingerprint": stack.sftp_host_key_fingerprint}},
        )
        assert fixed.status_code == 200, fixed.text
        retried = flow.call(
            "POST",
            f"/draft-orders/{draft_id}/retry-push",
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert retried.status_code == 202, retried.text
        flow.wait_settled([draft_id], timeout=120)
        assert len(files_of(stack, str(retried.json()["erp_export_id"]))) == 1
        assert files_of(stack, export_id) == []
    finally:
        flow.close()


def _sftp_body(stack: Any, **sftp: Any) -> dict[str, Any]:
    return {
        "name": "dropzone",
        "connector_type": "sftp_dropzone",
        "is_active": True,
        "file_format": "csv",
        "sftp": {
            "host": stack.sftp_host,
            "port": stack.sftp_port,
            "username": stack.sftp_username,
            "remote_directory": "/inbox",
            "host_key_fingerprint": stack.sftp_host_key_fingerprint,
            "private_key": stack.sftp_private_key,
            **sftp,
        },
    }


def test_a_far_future_connection_change_does_not_freeze_the_connector(
    stack: Any, flows: Any
) -> None:
    victim, _ = flows
    connection_id = connection_id_of(victim)
    forged = Envelope.wrap(
        ErpConnectionChangedV1(
            connection_id=uuid.UUID(connection_id),
            org_id=victim.org,
            name="evil",
            connector_type="sftp_dropzone",
            is_active=False,
            change="deactivated",
            changed_at=FAR_FUTURE,
        ),
        source="/orderflow/export-service",
        subject=connection_id,
        org_id=victim.org,
        actor_id="mallory",
        key=connection_id,
    )
    produce_as(stack, "export-service", forged)

    def active_in_read_model() -> bool:
        rows = stack.psql(
            "SELECT is_active FROM draft.erp_connector WHERE connection_id = %s", (connection_id,)
        )
        return bool(rows and rows[0][0])

    # with export-service's own credentials the record is believed until the next change
    wait_for(lambda: not active_in_read_model(), timeout=60, what="the forged change read")
    activated = victim.call("POST", f"/erp-connections/{connection_id}/activate")
    assert activated.status_code == 200 and activated.json()["is_active"] is True
    wait_for(active_in_read_model, timeout=60, what="the activation to take effect")
    assert_a_normal_push_still_works(stack, victim, victim.approved_draft())


def test_an_event_whose_envelope_org_is_not_its_datas_stays_out_of_both_chains(
    stack: Any, flows: Any
) -> None:
    victim, attacker = flows
    connection_id = connection_id_of(victim)
    audit_caught_up(stack, [victim.org, attacker.org])
    before = stack.psql(
        "SELECT count(*) FROM audit.audit_log WHERE org_id = ANY(%s)", ([victim.org, attacker.org],)
    )
    forged = Envelope.wrap(
        ErpConnectionChangedV1(
            connection_id=uuid.UUID(connection_id),
            org_id=victim.org,
            name="evil",
            connector_type="sftp_dropzone",
            is_active=False,
            change="deactivated",
            changed_at=datetime.now(UTC),
        ),
        source="/orderflow/export-service",
        subject=connection_id,
        org_id=attacker.org,
        actor_id="mallory",
        key=connection_id,
    )
    produce_as(stack, "export-service", forged)
    audited_as_untrusted(stack, forged.id)
    reason = dead_letter_reason(stack, forged.id)  # draft-api refused it
    assert reason is not None and reason.startswith("refused: envelope org")
    # the dead letter's own audit entry (UNREADABLE_EVENT) is untrusted too
    wait_for(
        lambda: stack.psql(
            "SELECT count(*) FROM audit.audit_log WHERE org_id = %s AND action = "
            "'UNREADABLE_EVENT' AND data->'original_headers'->>'ce_id' = %s",
            (UNTRUSTED_ORG, str(forged.id)),
        )[0][0],
        timeout=60,
        what="the dead letter's audit entry",
    )
    after = stack.psql(
        "SELECT count(*) FROM audit.audit_log WHERE org_id = ANY(%s)", ([victim.org, attacker.org],)
    )
    assert after == before
    rows = stack.psql(
        "SELECT is_active FROM draft.erp_connector WHERE connection_id = %s", (connection_id,)
    )
    assert rows == [(True,)]
    assert_a_normal_push_still_works(stack, victim, victim.approved_draft())


def test_connection_events_are_keyed_by_connection_and_the_read_model_follows(
    stack: Any, flows: Any
) -> None:
    victim, _ = flows
    first = connection_id_of(victim)
    second = victim.call("POST", "/erp-connections", json=_sftp_body(stack))
    assert second.status_code == 201, second.text
    second_id = str(second.json()["id"])
    assert victim.call("POST", f"/erp-connections/{first}/activate").status_code == 200

    def read_model() -> dict[str, bool]:
        return {
            str(r[0]): bool(r[1])
            for r in stack.psql(
                "SELECT connection_id, is_active FROM draft.erp_connector WHERE org_id = %s",
                (victim.org,),
            )
        }

    wait_for(
        lambda: read_model() == {first: True, second_id: False},
        timeout=60,
        what="draft-api's read model of both connections",
    )
    keys = asyncio.run(_keys_of(stack.kafka_options("admin"), {first, second_id}))
    assert keys and all(subject == key for subject, key in keys)
    assert {subject for subject, _ in keys} == {first, second_id}
    assert_a_normal_push_still_works(stack, victim, victim.approved_draft())


async def _keys_of(options: dict[str, Any], subjects: set[str]) -> list[tuple[str, str]]:
    """(subject, key) of every erp_connection.changed record about these connections."""
    consumer = AIOKafkaConsumer(
        Topic.ERP_CONNECTION_CHANGED,
        **options,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        partitions = list(consumer.assignment())
        end = await consumer.end_offsets(partitions)
        found: list[tuple[str, str]] = []
        deadline = loop.time() + 60
        while loop.time() < deadline:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(p >= end[tp] for p, tp in zip(positions, partitions, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers}
                    if headers.get("ce_subject") in subjects:
                        found.append((headers["ce_subject"], (record.key or b"").decode()))
        return found
    finally:
        await consumer.stop()
