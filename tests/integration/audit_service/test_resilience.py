"""The ingest keeps its promises when things go wrong: a failed commit is retried (its
offsets stay uncommitted), and topics created later are found by the pattern."""

from __future__ import annotations

import asyncio
import re
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from orderflow_shared.contracts.events import DraftCreatedV1
from orderflow_shared.messaging.envelope import Envelope

from .conftest import _produce, produce, wait_for


def _handler_failures(audit_service) -> float:
    body = audit_service.metrics()
    found = re.search(
        r'^orderflow_consumer_handler_failures_total\{consumer="audit-service"\} (\S+)$',
        body,
        re.MULTILINE,
    )
    return float(found.group(1)) if found else 0.0


def test_a_batch_whose_commit_fails_is_retried_not_lost(audit_service, audit_db, samples):
    org = f"org-{uuid.uuid4().hex[:10]}"
    role = audit_db.rows("SELECT current_user", as_url=audit_db.runtime_url)[0][0]
    before = _handler_failures(audit_service)
    audit_db.rows(f'REVOKE INSERT ON audit.audit_log FROM "{role}"')
    try:
        produce(audit_db.servers.kafka, samples.flow(org))
        wait_for(lambda: _handler_failures(audit_service) > before, "a failed batch")
        assert audit_db.count(org) == 0
    finally:
        audit_db.rows(f'GRANT INSERT ON audit.audit_log TO "{role}"')
    wait_for(lambda: audit_db.count(org) == 8, "the retried batch")
    report = audit_service.get("/audit-log/verify", org=org, roles=("admin",)).json()
    assert report == {"ok": True, "entries_checked": 8, "first_broken": None}


def test_a_topic_created_later_is_consumed_by_the_pattern(audit_service, audit_db, samples):
    org = f"org-{uuid.uuid4().hex[:10]}"
    topic = f"draft.it_{uuid.uuid4().hex[:8]}"
    draft_id = uuid.uuid4()
    envelope = Envelope.wrap(
        DraftCreatedV1(draft_id=draft_id, customer_id="C-1", line_count=0, created_at=samples.T0),
        source="/orderflow/draft-api",  # the producer of draft.* (else UNTRUSTED_EVENT)
        subject=str(draft_id),
        org_id=org,
        actor_id="user-1",
    )

    async def create_and_produce() -> None:
        admin = AIOKafkaAdminClient(**audit_db.servers.kafka)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        await _produce(
            audit_db.servers.kafka,
            [(topic, str(draft_id).encode(), envelope.data, envelope.kafka_headers())],
        )

    async def delete() -> None:
        admin = AIOKafkaAdminClient(**audit_db.servers.kafka)
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()

    asyncio.run(create_and_produce())
    try:
        rows = wait_for(
            lambda: audit_db.rows(
                "SELECT action FROM audit.audit_log WHERE event_id = %s", [envelope.id]
            ),
            f"the event on the new topic {topic}",
        )
    finally:
        asyncio.run(delete())
    assert rows == [("DRAFT_CREATED",)]
