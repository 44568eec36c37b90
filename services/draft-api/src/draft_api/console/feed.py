"""The live feed: one Kafka consumer per HTTP process, fanned out to the open pages.

The consumer reads the `draft.*` and `export.*` topics from their end (no consumer
group: every partition is assigned to it, nothing is committed, so each process sees
every event and leaves no state on the broker) and turns each event into a small
update: the draft, its new status and, for a failed or waiting push, the reason. An
update goes only to the subscribers of the event's organisation (the `ce_orgid` the
producing service wrote; an event whose payload names another org, or whose source
is not the topic's producer, is dropped), so no page ever sees another org's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from orderflow_shared.contracts.services import source_matches
from orderflow_shared.contracts.topics import Topic
from orderflow_shared.messaging.envelope import Envelope, EnvelopeError
from orderflow_shared.timing import backoff, sleep_or_stop

_log = logging.getLogger(__name__)

FEED_TOPICS: tuple[str, ...] = (
    str(Topic.DRAFT_CREATED),
    str(Topic.DRAFT_VALIDATED),
    str(Topic.DRAFT_APPROVED),
    str(Topic.DRAFT_PUSH_REQUESTED),
    str(Topic.EXPORT_SENT),
    str(Topic.EXPORT_FAILED),
    str(Topic.EXPORT_DELAYED),
)
#: a subscriber that does not keep up loses its oldest updates (and reloads)
QUEUE_SIZE = 500


def update_of(envelope: Envelope) -> dict[str, Any] | None:
    """What a page needs to know of one event (None: nothing to show, or not to trust)."""
    topic = envelope.record_topic or ""
    if not source_matches(topic, envelope.source):
        return None
    try:
        data = envelope.data_json()
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if "org_id" in data and data["org_id"] != envelope.org_id:
        return None
    draft_id = str(data.get("draft_id") or "")
    if not draft_id:
        return None
    update: dict[str, Any] = {"draft_id": draft_id, "topic": topic, "reason": None}
    if topic == Topic.DRAFT_CREATED:
        update["status"] = "NEW"
    elif topic == Topic.DRAFT_VALIDATED:
        update["status"] = str(data.get("status") or "")
    elif topic == Topic.DRAFT_APPROVED:
        update["status"] = "APPROVED"
    elif topic == Topic.DRAFT_PUSH_REQUESTED:
        update["status"] = "PUSHING"
    elif topic == Topic.EXPORT_SENT:
        update["status"] = "PUSHED"
    elif topic == Topic.EXPORT_FAILED:
        update["status"] = "ERROR"
        update["reason"] = f"{data.get('error_code', '')}: {data.get('error_message', '')}"
    elif topic == Topic.EXPORT_DELAYED:
        update["status"] = "PUSHING"
        update["reason"] = (
            f"Waiting for the dropzone ({data.get('error_code', '')}: "
            f"{data.get('error_message', '')}); next attempt {data.get('next_attempt_at', '')}"
        )
    else:
        return None
    if "erp_export_id" in data:
        update["erp_export_id"] = str(data["erp_export_id"])
    return update


@dataclass(eq=False)
class Subscription:
    org_id: str
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class Feed:
    """Subscribers per organisation, and the consumer loop that feeds them."""

    def __init__(self, kafka: dict[str, Any], topics: Iterable[str] = FEED_TOPICS) -> None:
        self._kafka = kafka
        self._topics = tuple(topics)
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self.live = False

    # -- subscribers ----------------------------------------------------------------
    @contextlib.contextmanager
    def subscribe(self, org_id: str) -> Any:
        subscription = Subscription(org_id)
        self._subscribers[org_id].add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers[org_id].discard(subscription)
            if not self._subscribers[org_id]:
                del self._subscribers[org_id]

    def publish(self, org_id: str, message: dict[str, Any]) -> None:
        for subscription in list(self._subscribers.get(org_id, ())):
            _offer(subscription.queue, message)

    def _set_live(self, live: bool) -> None:
        if live == self.live:
            return
        self.live = live
        for subscriptions in list(self._subscribers.values()):
            for subscription in list(subscriptions):
                _offer(subscription.queue, {"feed": live})

    # -- the consumer ---------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                async with self._consumer() as consumer:
                    failures = 0
                    await self._consume(consumer, stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any broker trouble: say so, try again
                _log.warning("console feed: %s: %s", type(exc).__name__, exc)
                failures += 1
            self._set_live(False)
            await sleep_or_stop(stop, backoff(failures, base=0.5, cap=5.0))

    @contextlib.asynccontextmanager
    async def _consumer(self) -> AsyncIterator[AIOKafkaConsumer]:
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
            client_id="draft-api-console-feed",
            **self._kafka,
        )
        await consumer.start()
        try:
            yield consumer
        finally:
            await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        # without a group, aiokafka assigns every partition of the subscribed topics
        consumer.subscribe(topics=list(self._topics))
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
            if stop.is_set():
                return
        partitions = sorted(consumer.assignment())
        await consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve the end offsets now: live from here on
            await consumer.position(tp)
        self._set_live(True)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for records in batches.values():
                for record in records:
                    self._handle(record)

    def _handle(self, record: Any) -> None:
        try:
            envelope = Envelope.from_kafka(
                record.key, record.value, record.headers, topic=record.topic
            )
        except EnvelopeError:
            return
        update = update_of(envelope)
        if update is not None:
            self.publish(envelope.org_id, update)


def _offer(queue: asyncio.Queue[dict[str, Any]], message: dict[str, Any]) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        message = {**message, "overflow": True}
    queue.put_nowait(message)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
