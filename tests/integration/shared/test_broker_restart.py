"""The relay and the consumer runner ride out a Kafka broker killed with SIGKILL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from orderflow_shared.contracts.events import DraftApprovedV1
from orderflow_shared.messaging.consumer import ConsumerRunner
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.inbox import claim_many
from orderflow_shared.messaging.outbox import OutboxRelay, add_event

from .conftest import Backbone, Scratch, wait_for


def event(n: int) -> Envelope:
    key = f"draft-{n % 5}"
    data = DraftApprovedV1(
        draft_id=uuid.uuid4(), approved_by_user_id=f"n{n}", approved_at=datetime.now(UTC)
    )
    return Envelope.wrap(data, source="it", subject=key, org_id="org-it", actor_id="it", key=key)


async def test_relay_and_consumer_survive_a_killed_broker(
    infra: Any, backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(3)

    async def store(numbers: range) -> None:
        async with scratch.sessions.begin() as session:
            for n in numbers:
                await add_event(session, scratch.outbox, event(n), topic=topic)

    async def handle(events: list[Envelope]) -> None:
        async with scratch.sessions.begin() as session:
            new = await claim_many(session, scratch.inbox, "restart-it", [e.id for e in events])
            for envelope in events:
                if envelope.id in new:
                    await session.execute(
                        scratch.effect.insert().values(event_id=envelope.id, note="x")
                    )

    def applied(total: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool(await scratch.count("SELECT count(*) FROM {s}.effect") >= total)

        return check

    relay = OutboxRelay(
        scratch.engine,
        scratch.outbox,
        kafka=backbone.kafka,
        poll_interval=0.2,
        max_backoff=1.0,
    )
    runner = ConsumerRunner(
        kafka=backbone.kafka,
        group_id=f"it-restart-{uuid.uuid4().hex[:8]}",
        topics=[topic],
        handler=handle,
        retry_max_delay=1.0,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(runner.run(stop))]
    try:
        await store(range(50))
        await wait_for(applied(50), "the first 50 events applied")

        await asyncio.to_thread(infra.kill, "kafka")
        await store(range(50, 100))
        await asyncio.to_thread(infra.start, "kafka")

        await wait_for(applied(100), "all 100 events applied after the restart", deadline=180)
        assert not any(task.done() for task in tasks)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    assert await scratch.count("SELECT count(*) FROM {s}.effect") == 100
    assert await scratch.count("SELECT count(DISTINCT event_id) FROM {s}.effect") == 100
    assert await scratch.count("SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL") == 0
