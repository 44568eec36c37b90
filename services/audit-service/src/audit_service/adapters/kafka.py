"""Kafka adapters: the decode step of the dead-letter consumer and a consumer-lag probe.

Records on `dead_letter` are by definition not readable events: the shared
ConsumerRunner reads them with `raw_record` as its decode step (and no dead letters of
its own), so they keep its promise: offsets are committed only after the handler
returned, and a failing batch is re-read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from orderflow_shared.messaging.consumer import Record, report_lag
from orderflow_shared.messaging.kafka import KafkaOptions
from orderflow_shared.timing import sleep_or_stop

from audit_service.adapters.mapping import RawRecord

_log = logging.getLogger(__name__)


def raw_record(record: Record) -> RawRecord:
    """A record as read, whatever it holds (never refused)."""
    return RawRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        headers=list(record.headers or ()),
    )


class LagProbe:
    """Sets `orderflow_consumer_lag_records` (log end offset minus committed offset) of
    some groups, with the group as `consumer`.

    Its admin client and offsets consumer stay connected from one round to the next
    (a Kafka login costs a SCRAM handshake); after a failed round both are made again."""

    def __init__(self, kafka: KafkaOptions, groups: dict[str, str]) -> None:
        self._kafka = dict(kafka)
        self._groups = {group: re.compile(pattern) for group, pattern in groups.items()}

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        clients: _Clients | None = None
        try:
            while not stop.is_set():
                try:
                    if clients is None:
                        clients = await self._connect()
                    await self.measure(clients)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _log.warning("consumer lag probe failed: %r", exc)
                    await _close(clients)
                    clients = None
                await sleep_or_stop(stop, interval)
        finally:
            await _close(clients)

    async def _connect(self) -> _Clients:
        clients = _Clients(
            AIOKafkaAdminClient(**self._kafka), AIOKafkaConsumer(**self._kafka, group_id=None)
        )
        try:
            await clients.admin.start()
            await clients.probe.start()
        except BaseException:
            await _close(clients)
            raise
        return clients

    async def measure(self, clients: _Clients) -> None:
        admin, probe = clients.admin, clients.probe
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


@dataclass(frozen=True)
class _Clients:
    admin: AIOKafkaAdminClient
    probe: AIOKafkaConsumer


async def _close(clients: _Clients | None) -> None:
    if clients is None:
        return
    for stop in (clients.probe.stop, clients.admin.close):
        try:
            await stop()
        except Exception as exc:
            _log.warning("consumer lag probe: closing a Kafka client failed: %r", exc)


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
