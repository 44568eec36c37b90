"""The outbox relay against real Postgres and Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord
from orderflow_shared.contracts.events import DraftApprovedV1
from orderflow_shared.db import make_engine
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.kafka import ensure_topics
from orderflow_shared.messaging.outbox import OutboxRelay, add_event
from prometheus_client import REGISTRY

from .conftest import Backbone, Scratch, header, read_topic, wait_for


def event(key: str, seq: int) -> Envelope:
    data = DraftApprovedV1(
        draft_id=uuid.uuid4(), approved_by_user_id=f"{key}#{seq}", approved_at=datetime.now(UTC)
    )
    return Envelope.wrap(data, source="it", subject=key, org_id="org-it", actor_id="it", key=key)


async def store(
    scratch: Scratch, topic: str, events: Sequence[Envelope], *, commit: bool = True
) -> None:
    async with scratch.sessions() as session:
        for envelope in events:
            await add_event(session, scratch.outbox, envelope, topic=topic)
        if commit:
            await session.commit()
        else:
            await session.rollback()


def relay_for(scratch: Scratch, backbone: Backbone, **options: object) -> OutboxRelay:
    params: dict[str, Any] = {"batch_size": 7, "poll_interval": 0.2}
    params.update(options)
    return OutboxRelay(
        scratch.engine,
        scratch.outbox,
        kafka=backbone.kafka,
        **params,
    )


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


def unpublished(scratch: Scratch) -> Callable[[], Awaitable[bool]]:
    async def none_left() -> bool:
        left = await scratch.count("SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL")
        return bool(left == 0)

    return none_left


def ids_by_key(records: Sequence[ConsumerRecord[bytes, bytes]]) -> dict[str, list[str]]:
    """Event ids per key in the order they were first seen (partition order)."""
    by_key: dict[str, list[str]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        key = record.key.decode()
        event_id = header(record, "ce_id")
        assert event_id is not None
        if event_id not in by_key[key]:
            by_key[key].append(event_id)
    return by_key


def expected_by_key(events: Sequence[Envelope]) -> dict[str, list[str]]:
    by_key: dict[str, list[str]] = defaultdict(list)
    for envelope in events:
        by_key[envelope.key].append(str(envelope.id))
    return by_key


async def test_the_relay_publishes_exactly_the_committed_events_in_order_per_key(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(3)
    keys = [f"draft-{i}" for i in range(5)]
    committed = [event(keys[n % 5], n) for n in range(150)]
    rolled_back = [event(keys[n % 5], 1000 + n) for n in range(15)]
    for chunk in range(10):
        await store(scratch, topic, committed[chunk * 15 : chunk * 15 + 15])
        if chunk % 3 == 0:
            await store(
                scratch, topic, rolled_back[chunk // 3 * 5 : chunk // 3 * 5 + 5], commit=False
            )

    async with running(relay_for(scratch, backbone)):
        await wait_for(unpublished(scratch), "every committed event marked published")
    records = await read_topic(backbone.kafka, topic, expected=150)

    assert len(records) == 150
    assert {header(r, "ce_id") for r in records} == {str(e.id) for e in committed}
    assert ids_by_key(records) == expected_by_key(committed)
    partitions_per_key = defaultdict(set)
    for record in records:
        partitions_per_key[record.key].add(record.partition)
    assert all(len(p) == 1 for p in partitions_per_key.values())
    assert await scratch.count("SELECT count(*) FROM {s}.outbox") == 150


async def test_a_committed_event_wakes_the_relay_through_notify(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(1)
    relay = relay_for(scratch, backbone, poll_interval=120.0)
    async with running(relay):
        await wait_for(lambda: _true(relay.is_leader), "the relay holds the lock")
        # the first (empty) batch ran; the relay now sleeps up to 120 s unless notified
        await wait_for(relay.ready, "the relay is ready")
        await store(scratch, topic, [event("draft-n", 1)])
        await wait_for(unpublished(scratch), "the notified relay published", deadline=60)
    records = await read_topic(backbone.kafka, topic, expected=1)
    assert len(records) == 1


async def _true(value: bool) -> bool:
    return value


def _relay_errors(schema: str) -> float:
    value = REGISTRY.get_sample_value("orderflow_outbox_relay_errors_total", {"schema": schema})
    return value or 0.0


async def test_the_relay_marks_only_acknowledged_events_and_recovers_from_kafka_errors(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    good = await new_topic(1)
    missing = f"it.shared.missing.{uuid.uuid4().hex[:12]}"  # not created yet; no auto-create
    first = [event("draft-a", n) for n in range(3)]
    stuck = [event("draft-b", n) for n in range(2)]
    after = [event("draft-a", n) for n in range(3, 5)]
    await store(scratch, good, first)
    await store(scratch, missing, stuck)
    await store(scratch, good, after)

    relay = relay_for(
        scratch, backbone, producer_options={"request_timeout_ms": 1500}, max_backoff=0.5
    )
    async with running(relay) as _stop:
        await wait_for(
            lambda: _true(_relay_errors(scratch.schema) >= 2), "the relay failed and retried"
        )
        published = await scratch.count(
            "SELECT count(*) FROM {s}.outbox WHERE published_at IS NOT NULL"
        )
        assert published == 3
        stuck_marked = await scratch.count(
            f"SELECT count(*) FROM {{s}}.outbox WHERE topic = '{missing}' "
            "AND published_at IS NOT NULL"
        )
        assert stuck_marked == 0

        await ensure_topics(backbone.kafka, 1, 1, [missing])
        await wait_for(unpublished(scratch), "the relay recovered and published the rest")

    good_records = await read_topic(backbone.kafka, good, expected=5)
    assert ids_by_key(good_records) == expected_by_key(first + after)
    assert len(good_records) == 5
    stuck_records = await read_topic(backbone.kafka, missing, expected=2)
    assert ids_by_key(stuck_records) == expected_by_key(stuck)


async def test_the_relay_does_not_die_while_kafka_is_unreachable(
    scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    await store(scratch, "it.shared.nowhere", [event("draft-x", 1)])
    relay = OutboxRelay(
        scratch.engine,
        scratch.outbox,
        kafka={"bootstrap_servers": "127.0.0.1:9"},
        poll_interval=0.1,
        max_backoff=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await wait_for(lambda: _true(_relay_errors(scratch.schema) >= 3), "three failed attempts")
        assert not task.done()
        assert not await relay.ready()
        assert (
            await scratch.count("SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL") == 1
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


RELAY_SCRIPT = """
import asyncio, json, os, sys
from sqlalchemy import MetaData
from orderflow_shared.db import make_engine
from orderflow_shared.messaging.outbox import OutboxRelay, outbox_table

async def main(dsn, schema):
    engine = make_engine(dsn, pool_size=1)
    table = outbox_table(MetaData(), schema)
    kafka = json.loads(os.environ["RELAY_KAFKA_OPTIONS"])
    relay = OutboxRelay(engine, table, kafka=kafka, batch_size=5,
                        poll_interval=0.1, producer_options={"linger_ms": 20})
    await relay.run(asyncio.Event())

asyncio.run(main(*sys.argv[1:3]))
"""


async def test_a_relay_killed_mid_batch_and_restarted_loses_nothing(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(3)
    events = [event(f"draft-{n % 20}", n) for n in range(2000)]
    for start in range(0, len(events), 500):
        await store(scratch, topic, events[start : start + 500])

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RELAY_SCRIPT,
        backbone.dsn,
        scratch.schema,
        env={**os.environ, "RELAY_KAFKA_OPTIONS": json.dumps(backbone.kafka)},
        start_new_session=True,
    )
    try:
        published_sql = "SELECT count(*) FROM {s}.outbox WHERE published_at IS NOT NULL"

        async def some_published() -> bool:
            return bool(await scratch.count(published_sql) >= 50)

        await wait_for(some_published, "the subprocess relay published a few batches")
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    published_at_kill = await scratch.count(published_sql)
    assert 0 < published_at_kill < len(events), "the kill must land before the end"

    async with running(relay_for(scratch, backbone, batch_size=200)):
        await wait_for(unpublished(scratch), "the restarted relay published everything")

    records = await read_topic(backbone.kafka, topic, expected=len(events))
    assert {header(r, "ce_id") for r in records} == {str(e.id) for e in events}
    assert ids_by_key(records) == expected_by_key(events)

    # consumer side: the inbox turns at-least-once into exactly-once effects
    applied = 0
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event_id = uuid.UUID(header(record, "ce_id") or "")
        applied += await scratch.apply_once("it-consumer", event_id, "killed-relay")
    assert applied == len(events)
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == len(events)
    assert await scratch.count("SELECT count(DISTINCT event_id) FROM {s}.effect") == len(events)


async def test_two_relays_at_once_one_publishes_and_the_other_takes_over(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(3)
    relays = [
        relay_for(scratch, backbone, client_id="relay-1"),
        relay_for(scratch, backbone, client_id="relay-2"),
    ]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(r.run(s)) for r, s in zip(relays, stops, strict=True)]
    written: list[Envelope] = []
    both_led = False
    watching = True

    async def watch() -> None:
        nonlocal both_led
        while watching:
            both_led = both_led or all(r.is_leader for r in relays)
            await asyncio.sleep(0.005)

    async def write(first: int, count: int) -> None:
        for n in range(first, first + count, 10):
            batch = [event(f"draft-{m % 7}", m) for m in range(n, n + 10)]
            await store(scratch, topic, batch)
            written.extend(batch)

    watcher = asyncio.create_task(watch())
    try:
        await wait_for(lambda: _true(any(r.is_leader for r in relays)), "a leader")
        leader = 0 if relays[0].is_leader else 1
        standby = 1 - leader
        await write(0, 300)
        await wait_for(unpublished(scratch), "the leader published the first part")
        assert not relays[standby].is_leader

        # the leader goes away; the standby takes the lock and carries on
        await write(300, 100)
        stops[leader].set()
        await asyncio.wait_for(tasks[leader], timeout=60)
        await wait_for(lambda: _true(relays[standby].is_leader), "the standby took over")
        await write(400, 200)
        await wait_for(unpublished(scratch), "the new leader published the rest")
    finally:
        watching = False
        await watcher
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    assert not both_led
    records = await read_topic(backbone.kafka, topic, expected=len(written))
    assert {header(r, "ce_id") for r in records} == {str(e.id) for e in written}
    assert ids_by_key(records) == expected_by_key(written)


async def test_the_relay_does_not_die_while_postgres_is_unreachable(scratch: Scratch) -> None:
    dead_engine = make_engine("postgresql://nobody@127.0.0.1:9/orderflow", pool_size=1)
    relay = OutboxRelay(
        dead_engine, scratch.outbox, kafka={"bootstrap_servers": "127.0.0.1:9"}, max_backoff=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await wait_for(
            lambda: _true(_relay_errors(scratch.schema) >= 3), "three failed connection attempts"
        )
        assert not task.done()
        assert not await relay.ready()
        assert not relay.is_leader
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await dead_engine.dispose()


async def test_published_rows_past_the_retention_are_deleted(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(1)
    await store(scratch, topic, [event("draft-r", n) for n in range(5)])
    relay = relay_for(scratch, backbone, retention=timedelta(0), cleanup_interval=0.1)

    async def table_empty() -> bool:
        return bool(await scratch.count("SELECT count(*) FROM {s}.outbox") == 0)

    async with running(relay):
        await wait_for(table_empty, "published rows deleted")
    records = await read_topic(backbone.kafka, topic, expected=5)
    assert len(records) == 5
