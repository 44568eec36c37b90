"""Topic `audit.checkpoint`: publishing the signed heads, reading them all back (a
checkpoint travels as contract `AuditCheckpointV1`, its fields under the same names)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from orderflow_shared.contracts.checkpoints import AuditCheckpointV1
from orderflow_shared.contracts.topics import Topic
from orderflow_shared.messaging.kafka import KafkaOptions, make_idempotent_producer
from pydantic import ValidationError

from audit_service.domain.checkpoint import Checkpoint

_log = logging.getLogger(__name__)

TOPIC = str(Topic.AUDIT_CHECKPOINT)


async def publish(kafka: KafkaOptions, checkpoints: Sequence[Checkpoint], client_id: str) -> None:
    """Send each checkpoint keyed by its org and wait until the broker has them all."""
    if not checkpoints:
        return
    producer = make_idempotent_producer(kafka, client_id)
    await producer.start()
    try:
        futures = [
            await producer.send(
                TOPIC,
                key=c.org_id.encode(),
                value=AuditCheckpointV1(**asdict(c)).model_dump_json().encode(),
            )
            for c in checkpoints
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _partitions(kafka: KafkaOptions) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        described = await admin.describe_topics([TOPIC])
    finally:
        await admin.close()
    return sorted(
        TopicPartition(TOPIC, p["partition"])
        for d in described
        if d["topic"] == TOPIC and not d.get("error_code")
        for p in d.get("partitions", ())
    )


async def read_all(kafka: KafkaOptions, timeout: float = 60.0) -> list[Checkpoint]:  # noqa: ASYNC109
    """Every checkpoint the topic still holds (compaction keeps at least the latest per
    org), read from the beginning to the end offsets of now, without a consumer group."""
    consumer = AIOKafkaConsumer(**kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    found: list[Checkpoint] = []
    try:
        async with asyncio.timeout(timeout):
            tps = await _partitions(kafka)
            if not tps:
                raise LookupError(f"topic {TOPIC} does not exist")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        if record.value is None:
                            continue
                        try:
                            model = AuditCheckpointV1.model_validate_json(record.value)
                        except ValidationError:
                            _log.warning("unreadable record at %s:%d", tp, record.offset)
                            continue
                        found.append(Checkpoint.of_columns(model.model_dump()))
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
    finally:
        await consumer.stop()
    return found
