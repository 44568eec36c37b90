"""Kafka adapters: a raw consumer for the dead-letter topic and a consumer-lag probe.

Records on `dead_letter` are by definition not readable events, so they cannot go
through the shared ConsumerRunner (which hands over parsed envelopes only); this
consumer hands over raw records with the same promise: offsets are committed only
after the handler returned, and a failing batch is re-read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError
from orderflow_shared.messaging.consumer import report_lag
from orderflow_shared.messaging.kafka import KafkaOptions
from orderflow_shared.timing import backoff, sleep_or_stop

from audit_service.domain.mapping import RawRecord

_log = logging.getLogger(__name__)

RawBatchHandler = Callable[[list[RawRecord]], Awaitable[None]]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: RawRecordConsumer) -> None:
        self._owner = consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self._owner.batch_lock:  # the batch in flight commits first
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner.joined = True


class RawRecordConsumer:
    def __init__(
        self,
        *,
        kafka: KafkaOptions,
        group_id: str,
        topics: list[str],
        handler: RawBatchHandler,
        client_id: str,
        max_batch: int = 500,
    ) -> None:
        self._kafka = dict(kafka)
        self._group_id = group_id
        self._topics = topics
        self._handler = handler
        self._client_id = client_id
        self._max_batch = max_batch
        self.batch_lock = asyncio.Lock()
        self.joined = False
        self._failures = 0

    async def ready(self) -> bool:
        return self.joined

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures += 1
                _log.warning("%s: consumer failed (%r); restarting", self._group_id, exc)
                await sleep_or_stop(stop, _backoff(self._failures))
            finally:
                self.joined = False

    async def _session(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            **self._kafka,
            group_id=self._group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._max_batch,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        consumer.subscribe(self._topics, listener=_Rebalance(self))
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=self._max_batch)
                if not batches:
                    continue
                async with self.batch_lock:
                    done = await self._process(consumer, batches)
                if not done:
                    await sleep_or_stop(stop, _backoff(self._failures))
        finally:
            await consumer.stop()

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> bool:
        assigned = consumer.assignment()
        batches = {tp: recs for tp, recs in batches.items() if tp in assigned and recs}
        if not batches:
            return True
        records = [_raw(r) for recs in batches.values() for r in recs]
        try:
            await self._handler(records)
        except Exception as exc:
            self._failures += 1
            _log.error("%s: batch of %d failed: %r", self._group_id, len(records), exc)
            for tp, recs in batches.items():
                if tp in consumer.assignment():
                    consumer.seek(tp, recs[0].offset)
            return False
        self._failures = 0
        try:
            await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batches.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            _log.warning("%s: commit after rebalance refused: %s", self._group_id, exc)
        return True


def _raw(record: ConsumerRecord[bytes, bytes]) -> RawRecord:
    return RawRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        headers=list(record.headers or ()),
    )


class LagProbe:
    """Sets `orderflow_consumer_lag_records` (log end offset minus committed offset) of
    some groups, with the group as `consumer`."""

    def __init__(self, kafka: KafkaOptions, groups: dict[str, str]) -> None:
        self._kafka = dict(kafka)
        self._groups = {group: re.compile(pattern) for group, pattern in groups.items()}

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.measure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("consumer lag probe failed: %r", exc)
            await sleep_or_stop(stop, interval)

    async def measure(self) -> None:
        admin = AIOKafkaAdminClient(**self._kafka)
        probe = AIOKafkaConsumer(**self._kafka, group_id=None)
        await admin.start()
        try:
            await probe.start()
            partitions = await _partitions(admin)
            for group, pattern in self._groups.items():
                tps = [tp for tp in partitions if pattern.search(tp.topic)]
                if not tps:
                    continue
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                ends = await probe.end_offsets(tps)
                starts = await probe.beginning_offsets(tps)
                for tp in tps:
                    meta = committed.get(tp)
                    position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
                    lag = max(ends[tp] - position, 0)
                    report_lag(group, tp.topic, tp.partition, lag)
        finally:
            await probe.stop()
            await admin.close()


async def _partitions(admin: AIOKafkaAdminClient) -> list[TopicPartition]:
    topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
    if not topics:
        return []
    described = await admin.describe_topics(topics)
    return [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if not d.get("error_code")
        for p in d.get("partitions", ())
    ]


def _backoff(failures: int) -> float:
    return backoff(failures, base=0.4, cap=30.0)
