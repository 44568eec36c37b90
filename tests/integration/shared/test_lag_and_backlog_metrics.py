"""The shared lag and backlog gauges against real Kafka and Postgres: a consumer's lag
per partition, and the outbox backlog a relay reports while Kafka is away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.outbox import OutboxRelay
from prometheus_client import REGISTRY

from .conftest import Backbone, Scratch, wait_for
from .test_consumer_runner import as_record, group_name, produce, runner_for
from .test_consumer_runner import event as consumer_event
from .test_consumer_runner import running as consumer_running
from .test_outbox_relay import event, relay_for, running, store


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def gauge_is(name: str, want: float, **labels: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return gauge(name, **labels) == want

    return check


async def test_a_consumer_reports_its_lag_until_it_has_handled_the_records(
    backbone: Backbone, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(1)
    await produce(backbone, topic, [as_record(consumer_event(note=f"e{n}")) for n in range(5)])
    group = group_name()
    healthy = asyncio.Event()

    async def handler(batch: list[Envelope]) -> None:
        if not healthy.is_set():
            raise RuntimeError("the database is away")

    lag = {"consumer": group, "topic": topic, "partition": "0"}
    async with consumer_running(runner_for(backbone, topic, group, handler)):
        # the failed batch is rewound: all five records are still to be handled
        await wait_for(gauge_is("orderflow_consumer_lag_records", 5, **lag), "a lag of 5")
        healthy.set()
        await wait_for(gauge_is("orderflow_consumer_lag_records", 0, **lag), "no lag left")


async def test_the_relay_reports_the_backlog_while_kafka_is_away_and_none_once_published(
    backbone: Backbone, scratch: Scratch, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic(1)
    await store(scratch, topic, [event("draft-b", n) for n in range(3)])
    schema = {"schema": scratch.schema}
    away = OutboxRelay(
        scratch.engine,
        scratch.outbox,
        kafka={"bootstrap_servers": "127.0.0.1:9"},
        poll_interval=0.1,
        max_backoff=0.2,
    )

    async def aged() -> bool:
        age = gauge("orderflow_outbox_oldest_unpublished_age_seconds", **schema)
        return gauge("orderflow_outbox_backlog_events", **schema) == 3 and (age or 0) >= 1.0

    async with running(away):
        # each retry takes the lock again and measures before the producer fails to start
        await wait_for(aged, "a backlog of 3 whose oldest row ages")
    assert gauge("orderflow_outbox_relay_leader", **schema) == 0

    async with running(relay_for(scratch, backbone)):
        await wait_for(gauge_is("orderflow_outbox_relay_leader", 1, **schema), "the new leader")
        await wait_for(gauge_is("orderflow_outbox_backlog_events", 0, **schema), "no backlog")
        assert gauge("orderflow_outbox_oldest_unpublished_age_seconds", **schema) == 0
