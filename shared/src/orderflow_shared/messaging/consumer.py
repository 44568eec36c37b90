"""Consumer runner: manual offset commits after the DB commit, dead letters for poison.

Contract:

    runner = ConsumerRunner(
        kafka=client_options(settings), group_id="export-service",
        topics=[Topic.DRAFT_PUSH_REQUESTED], handler=handle_batch, client_id="export-service",
    )
    await runner.run(stop)          # until stop is set

`handler(events: list[Envelope]) -> Awaitable[None]` gets the readable records of one
fetch (in partition order, up to `max_batch`), applies them (best: ONE DB transaction
for the whole list, claiming every event id with one `inbox.claim_many` statement,
then applying the new ones in order) and returns after the DB commit. Only then may
the runner commit the offsets of that batch. If the handler raises, nothing of the
batch is committed; the runner seeks back to the batch's first records and retries it
with backoff (the error is logged with the records' places, and counted in a
Prometheus counter).

Offset commits: the offsets of handled batches are committed to Kafka together, at
most every `commit_interval` seconds (0: after every batch), as soon as a poll comes
back empty, before partitions are given up in a rebalance, and when the runner stops.
So a commit always follows the DB commit of what it covers; a crash in between
redelivers at most `commit_interval` seconds of records, which the inbox drops. At a
low rate this turns one Kafka commit per record into one per interval.

Fetch wait: `fetch_max_wait_ms` stays 500 (aiokafka's default; `consumer_options` may
change it). It adds no latency: with `fetch_min_bytes=1` the broker answers a held fetch
as soon as a record arrives; it only bounds how long an idle fetch is held. Measured at
100 ms, the extra idle fetches were the consumer's largest Kafka cost (StreamWriter.write).

Decoding: by default a record becomes an `Envelope` (`read_envelope`); `decode=` gives
another step, `(record) -> item`, and the handler gets those items (audit-service reads
the dead-letter topic, which may hold anything, as raw records that way). Only
envelopes get CONSUMER spans (below).

A record that the decode step rejects (EnvelopeError: for envelopes, one that
`Envelope.from_kafka` or `parse()` refuses) is produced to `dead_letter` with headers
`dlt_reason`, `dlt_topic`, `dlt_partition`, `dlt_offset`, `dlt_consumer` (plus the
original headers and value) before its offset is committed, and the runner carries on.
So does a readable record that the consumer's own `refuse(item)` check rejects (e.g. an
envelope org that disagrees with the payload's): `dlt_reason` is `refused: <reason>`.
With `dead_letter_topic=None` such a record is logged and skipped instead. Each
envelope carries the topic it was read from (`record_topic`). Consumers use
`enable_auto_commit=False`, `auto_offset_reset="earliest"`,
`isolation_level="read_committed"`. Topics may also be a regex pattern (`pattern=`)
for the audit service.

Lag: before each poll the runner sets `orderflow_consumer_lag_records{consumer,topic,
partition}` (`CONSUMER_LAG`, the partition's last stable offset minus the position) for
each partition it holds, and drops the partitions it gives up (`report_lag=False` turns
this off).

Tracing: each handed record gets a CONSUMER span (`process <topic>`) that continues
the record's `traceparent` (a new trace when it has none) and ends when the batch is
committed (as an error when the handler raised). The handler gets envelopes whose
`traceparent` names that span: it continues the trace per event with
`orderflow_shared.tracing.attached(envelope_carrier(envelope))`.

Rebalances: a batch is handled and committed under a lock that the revoke callback
also takes, so a revoke waits for the batch in flight; records of partitions that
are no longer assigned are dropped unhandled (their new owner reads them from the
committed offset).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter, Gauge

from orderflow_shared import tracing
from orderflow_shared.contracts.topics import DEAD_LETTER_TOPIC
from orderflow_shared.messaging.envelope import Envelope, EnvelopeError
from orderflow_shared.messaging.kafka import KafkaOptions, make_idempotent_producer
from orderflow_shared.timing import backoff, sleep_or_stop

_log = logging.getLogger(__name__)

#: What a decode step makes of a record: an Envelope unless the runner is given another step.
T = TypeVar("T")
Record: TypeAlias = ConsumerRecord[bytes, bytes]
BatchHandler = Callable[[list[Envelope]], Awaitable[None]]
#: Headers a dead letter carries after the original record's headers.
DEAD_LETTER_HEADERS = ("dlt_reason", "dlt_topic", "dlt_partition", "dlt_offset", "dlt_consumer")

EVENTS_HANDLED = Counter(
    "orderflow_consumer_events_handled_total",
    "Events handed to a consumer's handler and committed.",
    ["consumer", "topic"],
)
HANDLER_FAILURES = Counter(
    "orderflow_consumer_handler_failures_total",
    "Batches whose handler raised (the batch is retried).",
    ["consumer"],
)
DEAD_LETTERS = Counter(
    "orderflow_consumer_dead_letters_total",
    "Unreadable records sent to the dead-letter topic.",
    ["consumer", "topic"],
)
#: Shared by every consumer of a process (audit-service's lag probe sets it too).
CONSUMER_LAG = Gauge(
    "orderflow_consumer_lag_records",
    "Records of a partition not yet handled by the consumer (log end, or last stable"
    " offset, minus the consumer's position).",
    ["consumer", "topic", "partition"],
)


def report_lag(consumer: str, topic: str, partition: int, lag: int) -> None:
    CONSUMER_LAG.labels(consumer, topic, str(partition)).set(max(lag, 0))


def forget_lag(consumer: str, partitions: Any) -> None:
    """Drop the lag of partitions this process no longer owns (their new owner reports)."""
    for tp in partitions:
        try:
            CONSUMER_LAG.remove(consumer, tp.topic, str(tp.partition))
        except KeyError:
            pass


def read_envelope(record: Record) -> Envelope:
    """The default decode step: the record's envelope, its data checked (EnvelopeError)."""
    envelope = Envelope.from_kafka(record.key, record.value, record.headers, topic=record.topic)
    envelope.parse()
    return envelope


def _place(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner[Any]) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Wait for the batch in flight: it commits before the partitions move on.
        async with self._runner._batch_lock:
            # what was handled is committed before another member reads from the commit
            if self._runner._consumer is not None:
                await self._runner._commit(self._runner._consumer)
            _log.info("%s: partitions revoked %s", self._runner.name, sorted(map(str, revoked)))
            if self._runner._report_lag:
                forget_lag(self._runner.name, revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._runner._joined = True
        self._runner._session_failures = 0
        _log.info("%s: partitions assigned %s", self._runner.name, sorted(map(str, assigned)))


class ConsumerRunner(Generic[T]):
    def __init__(
        self,
        *,
        kafka: KafkaOptions,
        group_id: str,
        handler: Callable[[list[T]], Awaitable[None]],
        decode: Callable[[Record], T] | None = None,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        client_id: str | None = None,
        max_batch: int = 500,
        name: str | None = None,
        dead_letter_topic: str | None = DEAD_LETTER_TOPIC,
        retry_initial_delay: float = 0.2,
        retry_max_delay: float = 30.0,
        consumer_options: dict[str, Any] | None = None,
        # a reason to refuse a decoded record (dead-lettered like an unreadable one)
        refuse: Callable[[T], str | None] | None = None,
        report_lag: bool = True,
        commit_interval: float = 0.25,
    ) -> None:
        if bool(topics) == bool(pattern):
            raise ValueError("give either topics or pattern")
        self._kafka = dict(kafka)
        self._group_id = group_id
        self._handler = handler
        #: None: envelopes, which alone get CONSUMER spans (the handler then takes
        #: envelopes, so T is Envelope)
        self._decode: Callable[[Record], Any] = decode or read_envelope
        self._traces = decode is None
        self._topics = [str(t) for t in topics]
        self._pattern = pattern
        self._client_id = client_id or group_id
        self._max_batch = max_batch
        self.name = name or group_id
        #: set CONSUMER_LAG per assigned partition on every poll (off where a process
        #: measures its groups' committed offsets itself)
        self._report_lag = report_lag
        self._dead_letter_topic = str(dead_letter_topic) if dead_letter_topic else None
        self._retry_initial_delay = retry_initial_delay
        self._retry_max_delay = retry_max_delay
        self._consumer_options = consumer_options or {}
        self._refuse = refuse
        self._commit_interval = commit_interval
        #: offsets handled (DB committed) but not yet committed to Kafka, and when they
        #: are due at the latest (loop time)
        self._uncommitted: dict[TopicPartition, int] = {}
        self._commit_due = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._batch_lock = asyncio.Lock()
        self._joined = False
        self._failures = 0  # consecutive handler failures, for the retry backoff
        self._session_failures = 0  # consecutive consumer restarts, for their backoff
        # (topic, partition, offset) of poison already dead-lettered in a batch being retried
        self._dead_lettered: set[tuple[str, int, int]] = set()

    async def ready(self) -> bool:
        """True once the consumer has joined its group (for /readyz)."""
        return self._joined

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._session(stop)
                self._session_failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._session_failures += 1
                delay = self._backoff(self._session_failures)
                _log.warning(
                    "%s: consumer failed (%s: %s); restarting in %.1fs",
                    self.name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await sleep_or_stop(stop, delay)
            finally:
                self._joined = False

    def _backoff(self, failures: int) -> float:
        return backoff(failures, base=self._retry_initial_delay, cap=self._retry_max_delay)

    def _make_consumer(self) -> AIOKafkaConsumer:
        options: dict[str, Any] = {
            "session_timeout_ms": 10_000,
            "heartbeat_interval_ms": 3_000,
            "fetch_max_wait_ms": 500,
        }
        options.update(self._consumer_options)
        return AIOKafkaConsumer(
            **self._kafka,
            group_id=self._group_id,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self._max_batch,
            **options,
        )

    async def _session(self, stop: asyncio.Event) -> None:
        consumer = self._make_consumer()
        listener = _Rebalance(self)
        if self._pattern:
            consumer.subscribe(pattern=self._pattern, listener=listener)
        else:
            consumer.subscribe(self._topics, listener=listener)
        producer = None
        if self._dead_letter_topic:
            producer = make_idempotent_producer(self._kafka, f"{self._client_id}-dead-letter")
        started: list[AIOKafkaConsumer | AIOKafkaProducer] = []
        try:
            # stopped even when start() fails half way (a refused login, say)
            if producer is not None:
                started.append(producer)
                await producer.start()
            started.append(consumer)
            self._uncommitted = {}
            self._consumer = consumer
            await consumer.start()
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                if self._report_lag:
                    await self._measure_lag(consumer)
                wait = 0.5
                if self._uncommitted:
                    wait = min(wait, max(self._commit_due - loop.time(), 0.0))
                batches = await consumer.getmany(
                    timeout_ms=int(wait * 1000), max_records=self._max_batch
                )
                handled = True
                if batches:
                    async with self._batch_lock:
                        handled = await self._process(consumer, producer, batches)
                if self._uncommitted and (not batches or loop.time() >= self._commit_due):
                    async with self._batch_lock:
                        await self._commit(consumer)
                if not handled:
                    await sleep_or_stop(stop, self._backoff(self._failures))
            async with self._batch_lock:
                await self._commit(consumer)
        finally:
            self._consumer = None
            for client in reversed(started):
                try:
                    await client.stop()
                except Exception as exc:
                    _log.warning("%s: stopping a Kafka client failed: %s", self.name, exc)

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Between batches the position is the next record to handle (a failed batch
        was rewound), so the lag is the partition's end as last fetched minus it."""
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched from it yet
            try:
                position = await consumer.position(tp)
            except IllegalStateError:
                continue  # revoked meanwhile
            report_lag(self.name, tp.topic, tp.partition, end - position)

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer | None,
        batches: dict[TopicPartition, list[Record]],
    ) -> bool:
        """Handle one fetch; True when committed, False when it must be retried."""
        assigned = consumer.assignment()
        batches = {tp: records for tp, records in batches.items() if tp in assigned and records}
        if not batches:
            return True
        read: list[Record] = []
        events: list[Any] = []
        poison: list[tuple[Record, str]] = []
        for records in batches.values():
            for record in records:
                try:
                    item = self._decode(record)
                except EnvelopeError as exc:
                    poison.append((record, str(exc)))
                    continue
                refusal = self._refuse(item) if self._refuse else None
                if refusal:
                    poison.append((record, f"refused: {refusal}"))
                else:
                    read.append(record)
                    events.append(item)
        spans: list[Any] = []
        if self._traces:
            events, spans = self._traced(events)
        try:
            await self._dead_letter(producer, poison)
            if events:
                await self._handler(events)
        except Exception as exc:
            for span in spans:
                tracing.fail_span(span, f"handler failed: {type(exc).__name__}")
                span.end()
            self._failures += 1
            HANDLER_FAILURES.labels(self.name).inc()
            _log.error(
                "%s: batch of %d event(s) failed (attempt %d; %s: %s); records %s",
                self.name,
                len(events),
                self._failures,
                type(exc).__name__,
                exc,
                [_place(record) for record in read[:20]],
                exc_info=exc,
            )
            self._rewind(consumer, batches)
            return False
        self._failures = 0
        self._dead_lettered.clear()
        if not self._uncommitted:
            self._commit_due = asyncio.get_running_loop().time() + self._commit_interval
        for tp, records in batches.items():
            self._uncommitted[tp] = records[-1].offset + 1
        handled: dict[str, int] = {}
        for record in read:
            handled[record.topic] = handled.get(record.topic, 0) + 1
        for topic, count in handled.items():
            EVENTS_HANDLED.labels(self.name, topic).inc(count)
        for span in spans:
            span.end()
        if self._commit_interval <= 0:
            await self._commit(consumer)
        return True

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the offsets handled so far (their DB transactions are committed);
        called under the batch lock."""
        if not self._uncommitted:
            return
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in self._uncommitted.items() if tp in assigned}
        self._uncommitted = {}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on while we worked; the new owner re-reads from the last
            # commit and the inbox makes the repeat harmless.
            _log.warning("%s: commit after rebalance refused: %s", self.name, exc)

    def _traced(self, events: list[Envelope]) -> tuple[list[Envelope], list[Any]]:
        """A CONSUMER span per event; the events as handed on, naming their span."""
        traced, spans = [], []
        for envelope in events:
            span = tracing.consumer_span(
                envelope.record_topic or envelope.topic,
                tracing.envelope_carrier(envelope),
                event_id=str(envelope.id),
                group=self._group_id,
            )
            spans.append(span)
            carrier = tracing.carrier_for_span(span)
            traced.append(dataclasses.replace(envelope, traceparent=carrier.get("traceparent")))
        return traced, spans

    async def _dead_letter(
        self,
        producer: AIOKafkaProducer | None,
        poison: list[tuple[Record, str]],
    ) -> None:
        futures = []
        positions = []
        for record, reason in poison:
            where = (record.topic, record.partition, record.offset)
            if where in self._dead_lettered:
                continue  # sent before this batch's handler failed
            if producer is None or record.topic == self._dead_letter_topic:
                _log.error(
                    "%s: unreadable record %s skipped: %s", self.name, _place(record), reason
                )
                continue
            headers = [*record.headers]
            headers += [
                ("dlt_reason", reason.encode()),
                ("dlt_topic", record.topic.encode()),
                ("dlt_partition", str(record.partition).encode()),
                ("dlt_offset", str(record.offset).encode()),
                ("dlt_consumer", self.name.encode()),
            ]
            topic = self._dead_letter_topic
            _log.warning(
                "%s: unreadable record %s to %s: %s", self.name, _place(record), topic, reason
            )
            futures.append(
                await producer.send(topic, value=record.value, key=record.key, headers=headers)
            )
            positions.append(where)
        await asyncio.gather(*futures)
        self._dead_lettered.update(positions)
        for topic, _partition, _offset in positions:
            DEAD_LETTERS.labels(self.name, topic).inc()

    def _rewind(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[Record]],
    ) -> None:
        """Seek every partition of the failed batch back to its first record."""
        assigned = consumer.assignment()
        for tp, records in batches.items():
            if tp in assigned:
                consumer.seek(tp, records[0].offset)
