"""Real Postgres and Kafka for the messaging backbone: scratch schemas and topics per test.

The servers come from the session fixture `infra` (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from orderflow_shared.db import make_engine, make_session_factory
from orderflow_shared.messaging.inbox import claim, inbox_table
from orderflow_shared.messaging.kafka import ensure_topics
from orderflow_shared.messaging.outbox import outbox_table
from sqlalchemy import Column, MetaData, Table, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class Backbone:
    dsn: str  # superuser, SQLAlchemy URL
    kafka: dict[str, Any]  # aiokafka options of the `admin` principal (test plumbing)
    kafka_env: dict[str, str]  # the same as KAFKA_* settings, for subprocesses


@pytest.fixture(scope="session")
def backbone(infra: Any) -> Backbone:
    env = {key.upper(): value for key, value in infra.kafka_settings("admin").items()}
    return Backbone(infra.superuser_dsn, infra.kafka_options("admin"), env)


@dataclass
class Scratch:
    """A schema of its own with outbox, inbox and an `effect` table (one row per apply)."""

    schema: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    outbox: Table
    inbox: Table
    effect: Table

    async def count(self, sql: str) -> int:
        async with self.engine.connect() as conn:
            value = (await conn.execute(text(sql.format(s=self.schema)))).scalar_one()
        return int(value)

    async def apply_once(self, consumer: str, event_id: uuid.UUID, note: str) -> bool:
        """What an idempotent consumer does: claim the id, apply the effect, one commit."""
        async with self.sessions.begin() as session:
            if not await claim(session, self.inbox, consumer, event_id):
                return False
            await session.execute(self.effect.insert().values(event_id=event_id, note=note))
            return True


@pytest.fixture
async def scratch(backbone: Backbone) -> AsyncIterator[Scratch]:
    schema = f"it_{uuid.uuid4().hex[:12]}"
    engine = make_engine(backbone.dsn, pool_size=5)
    metadata = MetaData()
    outbox = outbox_table(metadata, schema)
    inbox = inbox_table(metadata, schema)
    effect = Table(
        "effect",
        metadata,
        Column("event_id", UUID(as_uuid=True), nullable=False),
        Column("note", Text, nullable=False),
        schema=schema,
    )
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    try:
        yield Scratch(schema, engine, make_session_factory(engine), outbox, inbox, effect)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


@pytest.fixture
async def new_topic(backbone: Backbone) -> Callable[..., Awaitable[str]]:
    async def make(partitions: int = 3) -> str:
        name = f"it.shared.{uuid.uuid4().hex[:12]}"
        await ensure_topics(backbone.kafka, partitions, 1, [name])
        return name

    return make


async def wait_for(
    condition: Callable[[], Awaitable[bool]],
    what: str,
    deadline: float = DEADLINE_SECONDS,
    interval: float = 0.1,
) -> None:
    """Poll `condition` until true; fail with `what` after `deadline` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not await condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(interval)


async def read_topic(
    kafka: Mapping[str, Any], topic: str, expected: int, deadline: float = DEADLINE_SECONDS
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` (all partitions, from the start), once at least `expected`
    arrived and the topic's end offsets are reached."""
    consumer = AIOKafkaConsumer(
        **kafka,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= expected:
                ends = await consumer.end_offsets(partitions)
                positions = {tp: await consumer.position(tp) for tp in partitions}
                if all(positions[tp] >= ends[tp] for tp in partitions):
                    return records
            if loop.time() > end:
                raise AssertionError(
                    f"timed out reading {topic}: {len(records)} of {expected} records"
                )
    finally:
        await consumer.stop()


def header(record: ConsumerRecord[Any, Any], name: str) -> str | None:
    for key, value in record.headers:
        if key == name:
            return bytes(value).decode()
    return None
