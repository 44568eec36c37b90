"""3. Outbox relay: events/s and commit-to-published lag, vs a plain aiokafka producer loop.

Runs the relay of `orderflow_shared` on a scratch schema and topic of its own, so the
services' outboxes are not touched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from orderflow_shared.contracts.events import DraftCreatedV1
from orderflow_shared.contracts.services import Service, source_for
from orderflow_shared.db import make_engine, sync_url
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.kafka import make_idempotent_producer
from orderflow_shared.messaging.outbox import OutboxRelay, outbox_table
from psycopg.types.json import Jsonb
from sqlalchemy import MetaData, create_engine

from tests.bench.common import Bench, percentile

SCHEMA = "bench_relay"


def _envelope(topic_key: str) -> Envelope:
    data = DraftCreatedV1(
        draft_id=uuid.uuid4(),
        customer_id="C-BENCH",
        external_ref="B",
        line_count=1,
        created_at=datetime.now(UTC),
    )
    return Envelope.wrap(
        data,
        source=source_for(Service.DRAFT_API),  # draft.* belongs to draft-api
        subject=topic_key,
        org_id="bench",
        actor_id="bench",
        key=topic_key,
    )


def _rows(n: int) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(n):
        env = _envelope(f"key-{i % 64}")
        headers = Jsonb([[k, v.decode()] for k, v in env.kafka_headers()])
        rows.append((env.id, env.key, headers, env.data))
    return rows


async def _make_topic(kafka: dict[str, Any], topic: str) -> None:
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    finally:
        await admin.close()


async def _drop_topic(kafka: dict[str, Any], topic: str) -> None:
    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def _insert(bench: Bench, topic: str, rows: list[tuple[Any, ...]]) -> None:
    with bench.connect() as conn, conn.transaction():
        with conn.cursor().copy(
            f"COPY {SCHEMA}.outbox (event_id, topic, key, headers, payload) FROM STDIN"
        ) as copy:
            for event_id, key, headers, payload in rows:
                copy.write_row((event_id, topic, key, headers, payload))
        conn.execute(f"NOTIFY {SCHEMA}_outbox")


def _unpublished(bench: Bench) -> int:
    return int(bench.sql(f"SELECT count(*) FROM {SCHEMA}.outbox WHERE published_at IS NULL")[0][0])


async def _all_published(
    bench: Bench, relay_task: asyncio.Task[None], limit_s: float = 600
) -> None:
    """Poll until the scratch outbox has nothing unpublished (fails if the relay died)."""
    deadline = time.monotonic() + limit_s
    while True:
        if relay_task.done():
            relay_task.result()
        if not _unpublished(bench):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the relay did not publish the outbox in time")
        await asyncio.sleep(0.02)


async def _relay_phase(bench: Bench, topic: str) -> dict[str, Any]:
    engine = make_engine(bench.cfg.superuser_dsn(), pool_size=2)
    table = outbox_table(MetaData(), SCHEMA)
    relay = OutboxRelay(
        engine,
        table,
        kafka=bench.cfg.kafka_options("admin"),  # a scratch topic: no service owns it
        batch_size=1000,
        poll_interval=0.2,
        client_id="bench-relay",
    )
    count = 2_000 if bench.quick else 30_000
    rows = _rows(count)
    _insert(bench, topic, rows)
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(relay.run(stop))
    try:
        await _all_published(bench, task)
        throughput = count / (time.monotonic() - started)

        # lag at a steady 500 events/s, one event per transaction
        rate = 500.0
        steady = 500 if bench.quick else 2_500
        lag_rows = _rows(steady)
        async with await psycopg.AsyncConnection.connect(
            bench.cfg.superuser_dsn(), autocommit=True
        ) as conn:
            begin = time.monotonic()
            for i, (event_id, key, headers, payload) in enumerate(lag_rows):
                delay = begin + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the offered load
                async with conn.transaction():
                    await conn.execute(
                        f"INSERT INTO {SCHEMA}.outbox (event_id, topic, key, headers, payload)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (event_id, topic, key, headers, payload),
                    )
                    await conn.execute(f"NOTIFY {SCHEMA}_outbox")
        await _all_published(bench, task)
        lags = [
            float(r[0]) * 1000
            for r in bench.sql(
                f"SELECT extract(epoch FROM published_at - created_at) FROM {SCHEMA}.outbox"
                " WHERE event_id = ANY(%s)",
                ([r[0] for r in lag_rows],),
            )
        ]
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()
    return {
        "events": count,
        "events_per_s": throughput,
        "lag_rate_per_s": rate,
        "lag_events": steady,
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
    }


async def _producer_anchor(bench: Bench, topic: str, count: int) -> dict[str, Any]:
    rows = _rows(count)
    producer = make_idempotent_producer(bench.cfg.kafka_options("admin"), client_id="bench-anchor")
    await producer.start()
    try:
        started = time.monotonic()
        futures = [
            await producer.send(
                topic,
                value=bytes(payload),
                key=key.encode(),
                headers=[(k, v.encode()) for k, v in headers.obj],
            )
            for _id, key, headers, payload in rows
        ]
        await asyncio.gather(*futures)
        elapsed = time.monotonic() - started
    finally:
        await producer.stop()
    return {"events": count, "events_per_s": count / elapsed}


def run(bench: Bench) -> dict[str, Any]:
    topic = f"bench.relay.{uuid.uuid4().hex[:8]}"
    bench.sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    bench.sql(f"CREATE SCHEMA {SCHEMA}")
    metadata = MetaData()
    outbox_table(metadata, SCHEMA)
    engine = create_engine(sync_url(bench.cfg.superuser_dsn()))
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    asyncio.run(_make_topic(bench.cfg.kafka_options("admin"), topic))
    try:
        relay = asyncio.run(_relay_phase(bench, topic))
        anchor = asyncio.run(_producer_anchor(bench, topic, relay["events"]))
    finally:
        asyncio.run(_drop_topic(bench.cfg.kafka_options("admin"), topic))
        bench.sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    return {
        "relay": relay,
        "anchor_producer": anchor,
        "ratio": relay["events_per_s"] / anchor["events_per_s"],
    }
