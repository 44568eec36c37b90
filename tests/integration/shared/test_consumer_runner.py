"""The consumer runner against real Kafka and Postgres: inbox, dead letters, retries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError
from orderflow_shared.contracts.events import DraftApprovedV1
from orderflow_shared.messaging.consumer import ConsumerRunner, Record
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.inbox import claim
from prometheus_client import REGISTRY

from .conftest import Backbone, Scratch, header, read_topic, wait_for

Headers = list[tuple[str, bytes]]


def event(key: str = "draft-1", note: str = "") -> Envelope:
    data = DraftApprovedV1(
        draft_id=uuid.uuid4(), approved_by_user_id=note or key, approved_at=datetime.now(UTC)
    )
    return Envelope.wrap(data, source="it", subject=key, org_id="org-it", actor_id="u", key=key)


async def produce(
    backbone: Backbone, topic: str, records: Sequence[tuple[str, bytes | None, Headers]]
) -> None:
    producer = AIOKafkaProducer(**backbone.kafka, acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


def as_record(envelope: Envelope) -> tuple[str, bytes | None, Headers]:
    return envelope.key, envelope.data, envelope.kafka_headers()


def applying_handler(
    scratch: Scratch, consumer: str = "it-consumer"
) -> Callable[[list[Envelope]], Awaitable[None]]:
    """A typical handler: one transaction per batch, inbox claim per event."""

    async def handle(events: list[Envelope]) -> None:
        async with scratch.sessions.begin() as session:
            for envelope in events:
                if await claim(session, scratch.inbox, consumer, envelope.id):
                    await session.execute(
                        scratch.effect.insert().values(
                            event_id=envelope.id, note=envelope.data_json()["approved_by_user_id"]
                        )
                    )

    return handle


@asynccontextmanager
async def running(runner: ConsumerRunner) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)


def runner_for(
    backbone: Backbone, topic: str, group: str, handler: Any, **options: Any
) -> ConsumerRunner:
    return ConsumerRunner(
        kafka=backbone.kafka,
        group_id=group,
        topics=[topic],
        handler=handler,
        retry_initial_delay=0.05,
        retry_max_delay=0.5,
        **options,
    )


async def committed(backbone: Backbone, group: str) -> dict[int, int]:
    """partition -> committed offset of the group (empty when nothing was committed)."""
    admin = AIOKafkaAdminClient(**backbone.kafka)
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while True:
            try:
                offsets = await admin.list_consumer_group_offsets(group)
                break
            except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
                # the broker creates __consumer_offsets on first use
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def committed_reaches(backbone: Backbone, group: str, total: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sum((await committed(backbone, group)).values()) >= total

    return check


def effects_reach(scratch: Scratch, total: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await scratch.count("SELECT count(*) FROM {s}.effect") >= total)

    return check


def group_name() -> str:
    return f"it-group-{uuid.uuid4().hex[:10]}"


async def test_a_redelivered_event_is_applied_once(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(1)
    once, other = event(note="once"), event(note="other")
    await produce(backbone, topic, [as_record(once), as_record(once), as_record(other)])

    group = group_name()
    async with running(runner_for(backbone, topic, group, applying_handler(scratch))):
        await wait_for(committed_reaches(backbone, group, 3), "all three records committed")
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == 2

    # a group that lost its offsets reads everything again: the inbox still says no
    replay = group_name()
    async with running(runner_for(backbone, topic, replay, applying_handler(scratch))):
        await wait_for(committed_reaches(backbone, replay, 3), "the replay committed")
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == 2
    assert await scratch.count("SELECT count(*) FROM {s}.inbox") == 2


async def test_poison_records_go_to_the_dead_letter_topic_and_the_consumer_goes_on(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic, dead_letters = await new_topic(1), await new_topic(1)
    good_1, good_2, template = event(note="good-1"), event(note="good-2"), event()
    headers = template.kafka_headers()
    unknown_type = [
        (n, b"orderflow.draft.exploded.v1" if n == "ce_type" else v) for n, v in headers
    ]
    poison: list[tuple[str, bytes | None, Headers]] = [
        ("draft-1", template.data, [h for h in headers if h[0] != "ce_id"]),
        ("draft-1", b"\x00not json", headers),
        ("draft-1", template.data, unknown_type),
        ("draft-1", b'{"draft_id": "not-a-uuid"}', headers),
    ]
    await produce(backbone, topic, [as_record(good_1), *poison, as_record(good_2)])

    group = group_name()
    runner = runner_for(
        backbone,
        topic,
        group,
        applying_handler(scratch),
        dead_letter_topic=dead_letters,
        name="it-poison-consumer",
    )
    async with running(runner):
        await wait_for(committed_reaches(backbone, group, 6), "all six records committed")
    notes = await scratch.count("SELECT count(*) FROM {s}.effect WHERE note LIKE 'good-%'")
    assert notes == 2

    letters = await read_topic(backbone.kafka, dead_letters, expected=4)
    assert len(letters) == 4
    assert [header(r, "dlt_offset") for r in letters] == ["1", "2", "3", "4"]
    assert {header(r, "dlt_topic") for r in letters} == {topic}
    assert {header(r, "dlt_partition") for r in letters} == {"0"}
    assert {header(r, "dlt_consumer") for r in letters} == {"it-poison-consumer"}
    reasons = [header(r, "dlt_reason") or "" for r in letters]
    assert "missing header(s): ce_id" in reasons[0]
    assert "not JSON" in reasons[1]
    assert "unknown event type" in reasons[2]
    assert "invalid orderflow.draft.approved.v1 data" in reasons[3]
    assert [r.value for r in letters] == [p[1] for p in poison]
    assert header(letters[2], "ce_type") == "orderflow.draft.exploded.v1"
    assert letters[1].key == b"draft-1"


async def test_a_failing_handler_is_retried_and_nothing_is_committed_before_success(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(1)
    events = [event(note=f"e{n}") for n in range(5)]
    await produce(backbone, topic, [as_record(e) for e in events])
    group = group_name()
    apply = applying_handler(scratch)
    attempts: list[list[uuid.UUID]] = []
    committed_seen: list[dict[int, int]] = []

    async def flaky(batch: list[Envelope]) -> None:
        attempts.append([e.id for e in batch])
        committed_seen.append(await committed(backbone, group))
        if len(attempts) <= 2:
            raise RuntimeError("database is having a bad day")
        await apply(batch)

    failures_before = (
        REGISTRY.get_sample_value("orderflow_consumer_handler_failures_total", {"consumer": group})
        or 0.0
    )
    async with running(runner_for(backbone, topic, group, flaky)):
        await wait_for(committed_reaches(backbone, group, 5), "the batch finally committed")

    assert len(attempts) >= 3
    assert all(batch[0] == events[0].id for batch in attempts), "a retry never skips"
    assert committed_seen[:3] == [{}, {}, {}]
    assert sorted({i for batch in attempts for i in batch}) == sorted(e.id for e in events)
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == 5
    failures_after = REGISTRY.get_sample_value(
        "orderflow_consumer_handler_failures_total", {"consumer": group}
    )
    assert failures_after == failures_before + 2


async def test_a_pattern_subscription_reads_every_matching_topic(
    backbone: Backbone, scratch: Scratch
) -> None:
    from orderflow_shared.messaging.kafka import ensure_topics

    prefix = f"it.pattern.{uuid.uuid4().hex[:10]}"
    topics = [f"{prefix}.a", f"{prefix}.b"]
    await ensure_topics(backbone.kafka, 1, 1, topics)
    for topic in topics:
        await produce(backbone, topic, [as_record(event(note=topic))])

    group = group_name()
    runner = ConsumerRunner(
        kafka=backbone.kafka,
        group_id=group,
        pattern=prefix.replace(".", r"\.") + r"\..*",
        handler=applying_handler(scratch),
    )
    assert not await runner.ready()
    async with running(runner):
        await wait_for(runner.ready, "the consumer joined its group")
        await wait_for(effects_reach(scratch, 2), "one event from each topic applied")
    assert await scratch.count("SELECT count(DISTINCT note) FROM {s}.effect") == 2


async def test_rebalances_and_restarts_lose_nothing(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(3)
    group = group_name()
    events = [event(key=f"draft-{n % 9}", note=f"n{n}") for n in range(300)]
    first = runner_for(backbone, topic, group, applying_handler(scratch), max_batch=20)
    second = runner_for(backbone, topic, group, applying_handler(scratch), max_batch=20)

    stop_first = asyncio.Event()
    task_first = asyncio.create_task(first.run(stop_first))
    try:
        await produce(backbone, topic, [as_record(e) for e in events[:100]])
        await wait_for(effects_reach(scratch, 20), "the first consumer is applying")
        async with running(second):
            await wait_for(second.ready, "the second consumer joined")
            await produce(backbone, topic, [as_record(e) for e in events[100:200]])
            stop_first.set()
            await asyncio.wait_for(task_first, timeout=60)
            await produce(backbone, topic, [as_record(e) for e in events[200:]])
            await wait_for(effects_reach(scratch, 300), "every event applied")
            await wait_for(committed_reaches(backbone, group, 300), "every offset committed")
    finally:
        stop_first.set()
        await asyncio.wait_for(task_first, timeout=60)
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == 300
    assert await scratch.count("SELECT count(DISTINCT event_id) FROM {s}.effect") == 300


async def test_a_retried_batch_dead_letters_its_poison_only_once(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic, dead_letters = await new_topic(1), await new_topic(1)
    good = event(note="good")
    await produce(backbone, topic, [("draft-1", b"{{{", good.kafka_headers()), as_record(good)])
    group = group_name()
    apply = applying_handler(scratch)
    calls = 0

    async def flaky(batch: list[Envelope]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError("not yet")
        await apply(batch)

    runner = runner_for(backbone, topic, group, flaky, dead_letter_topic=dead_letters)
    async with running(runner):
        await wait_for(committed_reaches(backbone, group, 2), "both records committed")
    assert calls == 3
    letters = await read_topic(backbone.kafka, dead_letters, expected=1)
    assert len(letters) == 1
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == 1


async def test_a_decode_step_hands_on_raw_records_and_without_dead_letters_skips_refusals(
    backbone: Backbone, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(1)
    records: list[tuple[str, bytes | None, Headers]] = [
        ("k", b"not an envelope", []),
        ("k", b"refuse me", []),
        ("k", None, [("h", b"v")]),
    ]
    await produce(backbone, topic, records)
    group = group_name()
    seen: list[tuple[int, bytes | None, list[tuple[str, bytes]]]] = []

    async def keep(batch: list[Record]) -> None:
        seen.extend((r.offset, r.value, list(r.headers)) for r in batch)

    def refuse(record: Record) -> str | None:
        return "not wanted" if record.value == b"refuse me" else None

    runner = runner_for(
        backbone,
        topic,
        group,
        keep,
        decode=lambda record: record,
        refuse=refuse,
        dead_letter_topic=None,
    )
    async with running(runner):
        await wait_for(committed_reaches(backbone, group, 3), "all three records committed")
    assert seen == [(0, b"not an envelope", []), (2, None, [("h", b"v")])]
    labels = {"consumer": group, "topic": topic}
    assert REGISTRY.get_sample_value("orderflow_consumer_events_handled_total", labels) == 2
    assert REGISTRY.get_sample_value("orderflow_consumer_dead_letters_total", labels) is None
