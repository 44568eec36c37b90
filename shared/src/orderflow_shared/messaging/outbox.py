"""Transactional outbox: events commit with the state change; a relay publishes them.

- `outbox_table(metadata, schema)` declares `<schema>.outbox`:
  `id BIGSERIAL PK, event_id UUID UNIQUE, topic TEXT, key TEXT, headers JSONB,
  payload BYTEA, created_at TIMESTAMPTZ default now(), published_at TIMESTAMPTZ NULL`
  plus a partial index on id where published_at is null, and `trace_context JSONB NULL`
  (the W3C trace context of the span that wrote the row). Services include it in their
  SQLAlchemy metadata and create it in their Alembic migrations
  (`create_outbox_table(op, schema)`, then `add_outbox_trace_context(op, schema)`).
- `add_event(session, table, envelope)` inserts the envelope as a row in the caller's
  transaction and issues `NOTIFY <schema>_outbox` (delivered at commit) so the relay wakes.
  The row keeps the active span's trace context (`orderflow_shared.tracing`), else the
  envelope's own `traceparent`.
- `OutboxRelay(...).run(stop)` loops until `stop` is set: holds a session-level
  Postgres advisory lock on a dedicated connection (only one relay per schema publishes
  at a time; the others retry the lock every `poll_interval` and take over when it
  dies), reads unpublished rows in id order (batch), publishes them with an idempotent
  aiokafka producer (acks=all), waits for every ack, then marks the acked rows
  published in one UPDATE. Wakes on LISTEN/NOTIFY or every `poll_interval` seconds.
  On Kafka or database errors it backs off and tries again, never dies; nothing is
  marked published that Kafka did not ack. Published rows older than `retention` are
  deleted now and then.
- Metrics: `orderflow_outbox_relay_leader{schema}` (0 from the start, 1 while holding
  the lock), and, from the leader only, `orderflow_outbox_backlog_events{schema}` and
  `orderflow_outbox_oldest_unpublished_age_seconds{schema}` (measured on taking the lock,
  before the producer starts, and then every BACKLOG_INTERVAL seconds); a standby drops
  both.
- Tracing: a row with a trace context is published under a PRODUCER span
  (`publish <topic>`) that continues it, and its record carries that span's
  `traceparent` header, so the consumers continue the writer's trace.

The rows are read and marked on the same connection that holds the lock, so a relay
that lost its connection (and with it the lock) cannot mark anything any more.
Delivery is at least once; consumers deduplicate with the inbox.

Order per key: rows are published in id order. Two transactions that touch the same
entity are serialized by its row lock and take their outbox ids after it, so one key's
ids follow commit order; a lower id that commits late (another key's) is still picked
up, because the relay reads every unpublished row, not "ids above the last one".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge, Histogram
from psycopg import sql
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orderflow_shared import tracing
from orderflow_shared.db import held_connection, libpq_url
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.kafka import KafkaOptions, make_idempotent_producer
from orderflow_shared.timing import backoff, sleep_or_stop

_log = logging.getLogger(__name__)

OUTBOX_TABLE = "outbox"
TRACE_CONTEXT_COLUMN = "trace_context"
#: headers of the record that the relay sets from the row's trace context
_TRACE_HEADERS = ("traceparent", "tracestate")
#: the backlog gauge counts at most this many rows (a bounded index scan)
BACKLOG_COUNT_CAP = 100_000
#: the leader measures the backlog at most this often (seconds)
BACKLOG_INTERVAL = 5.0

EVENTS_PUBLISHED = Counter(
    "orderflow_outbox_events_published_total",
    "Outbox events acknowledged by Kafka and marked published.",
    ["schema", "topic"],
)
PUBLISH_LAG = Histogram(
    "orderflow_outbox_publish_lag_seconds",
    "Time from the outbox row's creation to Kafka's acknowledgement.",
    ["schema"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RELAY_ERRORS = Counter(
    "orderflow_outbox_relay_errors_total",
    "Relay iterations that failed (Kafka or database) and were retried.",
    ["schema"],
)
RELAY_LEADER = Gauge(
    "orderflow_outbox_relay_leader",
    "1 while this process holds the relay lock of the schema (0 from the relay's start).",
    ["schema"],
)
BACKLOG = Gauge(
    "orderflow_outbox_backlog_events",
    f"Unpublished outbox rows (counted up to {BACKLOG_COUNT_CAP}), reported by the relay"
    " that holds the lock.",
    ["schema"],
)
OLDEST_UNPUBLISHED_AGE = Gauge(
    "orderflow_outbox_oldest_unpublished_age_seconds",
    "Age of the oldest unpublished outbox row (0 when none), reported by the relay that"
    " holds the lock.",
    ["schema"],
)


def _columns() -> list[Column[Any]]:
    return [
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
    ]


def _unpublished_index_name(schema: str) -> str:
    return f"ix_{schema}_outbox_unpublished"


def outbox_table(metadata: MetaData, schema: str) -> Table:
    existing = metadata.tables.get(f"{schema}.{OUTBOX_TABLE}")
    if existing is not None:
        return existing
    table = Table(OUTBOX_TABLE, metadata, *_columns(), _trace_context_column(), schema=schema)
    Index(
        _unpublished_index_name(schema),
        table.c.id,
        postgresql_where=table.c.published_at.is_(None),
    )
    return table


def _trace_context_column() -> Column[Any]:
    return Column(TRACE_CONTEXT_COLUMN, JSONB, nullable=True)


def add_outbox_trace_context(op: Any, schema: str) -> None:
    """Alembic helper (after `create_outbox_table`): the nullable trace context column."""
    op.add_column(OUTBOX_TABLE, _trace_context_column(), schema=schema)


def drop_outbox_trace_context(op: Any, schema: str) -> None:
    op.drop_column(OUTBOX_TABLE, TRACE_CONTEXT_COLUMN, schema=schema)


def create_outbox_table(op: Any, schema: str) -> None:
    """Alembic helper: create the outbox table and its index with `op`."""
    op.create_table(OUTBOX_TABLE, *_columns(), schema=schema)
    op.create_index(
        _unpublished_index_name(schema),
        OUTBOX_TABLE,
        ["id"],
        schema=schema,
        postgresql_where=text("published_at IS NULL"),
    )


def drop_outbox_table(op: Any, schema: str) -> None:
    op.drop_index(_unpublished_index_name(schema), table_name=OUTBOX_TABLE, schema=schema)
    op.drop_table(OUTBOX_TABLE, schema=schema)


_INSERTED = ("event_id", "topic", "key", "headers", "payload", TRACE_CONTEXT_COLUMN)
_DELETE_SLICE = 5000


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


def default_lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key per schema."""
    digest = hashlib.sha256(f"orderflow.outbox.relay:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def add_event(
    session: AsyncSession, table: Table, envelope: Envelope, *, topic: str | None = None
) -> None:
    """Insert the event in the caller's transaction; the relay is woken at commit.

    `topic` overrides the contract topic of the event type (tests, replays).
    """
    await _insert(session, table, [_row(envelope, topic)])


async def add_events(session: AsyncSession, table: Table, envelopes: Iterable[Envelope]) -> None:
    """`add_event` for each, in order, in one statement (a unit of work's events at
    commit): the rows take their ids in the list's order, which the relay keeps."""
    rows = [_row(envelope, None) for envelope in envelopes]
    if rows:
        await _insert(session, table, rows)


def _row(envelope: Envelope, topic: str | None) -> dict[str, Any]:
    trace_context = tracing.current_carrier() or tracing.envelope_carrier(envelope)
    return {
        "event_id": envelope.id,
        "topic": topic or envelope.topic,
        "key": envelope.key,
        "headers": [[name, value.decode()] for name, value in envelope.kafka_headers()],
        "payload": envelope.data,
        "trace_context": trace_context or None,
    }


async def _insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """The rows and the relay's NOTIFY in one round trip: a plain statement (nothing for
    SQLAlchemy to compile), prepared by psycopg once it repeats. Postgres delivers one
    NOTIFY per channel and transaction however often it is sent."""
    conn = await session.connection()
    name = conn.dialect.identifier_preparer.format_table(table)
    values = ", ".join(["(%s, %s, %s, %s::jsonb, %s, %s::jsonb)"] * len(rows))
    params: list[Any] = []
    for row in rows:
        context = row["trace_context"]
        params += [
            row["event_id"],
            row["topic"],
            row["key"],
            json.dumps(row["headers"]),
            row["payload"],
            None if context is None else json.dumps(context),
        ]
    params.append(notify_channel(table.schema or "public"))
    # the names are the table's own, quoted; the values are parameters
    statement = f"WITH added AS (INSERT INTO {name} ({', '.join(_INSERTED)}) VALUES {values})"  # noqa: S608
    await conn.exec_driver_sql(statement + " SELECT pg_notify(%s, '')", tuple(params))


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        *,
        kafka: KafkaOptions,
        lock_key: int | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        client_id: str = "outbox-relay",
        retention: timedelta = timedelta(days=7),
        cleanup_interval: float = 300.0,
        max_backoff: float = 30.0,
        producer_options: dict[str, Any] | None = None,
    ) -> None:
        self._dsn = libpq_url(engine.url.render_as_string(hide_password=False))
        self._schema = table.schema or "public"
        self._table = sql.Identifier(self._schema, table.name)
        self._kafka = dict(kafka)
        self._lock_key = default_lock_key(self._schema) if lock_key is None else lock_key
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._client_id = client_id
        self._retention = retention
        self._cleanup_interval = cleanup_interval
        self._max_backoff = max_backoff
        self._producer_options = producer_options or {}
        self._is_leader = False
        self._healthy = False
        self._failures = 0  # consecutive, for the backoff
        self._next_backlog = 0.0  # loop time of the next backlog measurement

    @property
    def is_leader(self) -> bool:
        """True while this relay holds the lock and publishes."""
        return self._is_leader

    async def ready(self) -> bool:
        """True while the relay runs without errors (as leader or as standby)."""
        return self._healthy

    async def run(self, stop: asyncio.Event) -> None:
        RELAY_LEADER.labels(self._schema).set(0)
        while not stop.is_set():
            try:
                await self._session(stop)
                self._failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures += 1
                self._healthy = False
                RELAY_ERRORS.labels(self._schema).inc()
                delay = backoff(self._failures, base=0.5, cap=self._max_backoff)
                _log.warning(
                    "outbox relay for %s failed (%s: %s); retrying in %.1fs",
                    self._schema,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await sleep_or_stop(stop, delay)
        self._healthy = False

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection's life: take the lock, then publish until stopped or broken."""
        conn = await held_connection(self._dsn, f"{self._client_id}:{self._schema}")
        producer: AIOKafkaProducer | None = None
        try:
            self._healthy = True
            if not await self._acquire_lock(conn, stop):
                return
            self._is_leader = True
            RELAY_LEADER.labels(self._schema).set(1)
            _log.info("outbox relay for %s holds the lock", self._schema)
            # before the producer starts: the backlog grows while Kafka is away
            self._next_backlog = 0.0
            await self._measure_backlog(conn)
            await conn.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(notify_channel(self._schema)))
            )
            # no linger: a batch's sends all reach the accumulator before the sender
            # runs, so its batches fill up anyway; a lone event goes at once (the
            # default 5 ms was paid on every hop of a push's way at a low rate)
            producer = make_idempotent_producer(
                self._kafka, self._client_id, **{"linger_ms": 0, **self._producer_options}
            )
            await producer.start()
            await self._publish_loop(conn, producer, stop)
        finally:
            self._is_leader = False
            RELAY_LEADER.labels(self._schema).set(0)
            if producer is not None:
                try:
                    # flushing can hang while Kafka is away; unacked rows stay unpublished
                    await asyncio.wait_for(producer.stop(), timeout=15)
                except Exception as exc:
                    _log.warning("stopping the relay producer failed: %s", exc)
            await conn.close()

    async def _acquire_lock(self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> bool:
        while not stop.is_set():
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key,))
            row = await cur.fetchone()
            if row and row[0]:
                return True
            self._forget_backlog()  # the leader reports it
            await sleep_or_stop(stop, self._poll_interval)
        return False

    async def _measure_backlog(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Set the backlog gauges, at most every BACKLOG_INTERVAL seconds."""
        now = asyncio.get_running_loop().time()
        if now < self._next_backlog:
            return
        self._next_backlog = now + BACKLOG_INTERVAL
        cur = await conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE published_at IS NULL"
                " LIMIT %s) AS capped),"
                " (SELECT extract(epoch FROM clock_timestamp() - created_at) FROM {t}"
                " WHERE published_at IS NULL ORDER BY id LIMIT 1)"
            ).format(t=self._table),
            (BACKLOG_COUNT_CAP,),
        )
        row = await cur.fetchone()
        count, age = (row[0], row[1]) if row else (0, None)
        BACKLOG.labels(self._schema).set(int(count or 0))
        OLDEST_UNPUBLISHED_AGE.labels(self._schema).set(max(float(age or 0), 0.0))

    def _forget_backlog(self) -> None:
        for gauge in (BACKLOG, OLDEST_UNPUBLISHED_AGE):
            try:
                gauge.remove(self._schema)
            except KeyError:
                pass

    async def _publish_loop(
        self,
        conn: psycopg.AsyncConnection[Any],
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_cleanup = loop.time()
        while not stop.is_set():
            await self._measure_backlog(conn)
            published = await self.publish_batch(conn, producer)
            self._healthy = True
            self._failures = 0
            if loop.time() >= next_cleanup:
                await self._delete_old(conn)
                next_cleanup = loop.time() + self._cleanup_interval
            if published >= self._batch_size:
                continue
            await self._wait_for_wake(conn, stop)

    async def publish_batch(
        self, conn: psycopg.AsyncConnection[Any], producer: AIOKafkaProducer
    ) -> int:
        """Publish one batch of unpublished rows; returns how many were marked published."""
        cur = await conn.execute(
            sql.SQL(
                "SELECT id, topic, key, headers, payload, created_at, event_id, trace_context"
                " FROM {} "
                "WHERE published_at IS NULL ORDER BY id LIMIT %s"
            ).format(self._table),
            (self._batch_size,),
        )
        rows = await cur.fetchall()
        if not rows:
            return 0
        futures: list[asyncio.Future[Any]] = []
        spans: list[Any] = []
        send_error: BaseException | None = None
        for _id, topic, key, headers, payload, _created, event_id, trace_context in rows:
            record_headers = [(name, value.encode()) for name, value in headers]
            span = None
            if trace_context:
                span = tracing.producer_span(topic, trace_context, str(event_id))
                record_headers = [h for h in record_headers if h[0] not in _TRACE_HEADERS]
                record_headers += [
                    (name, value.encode()) for name, value in tracing.carrier_for_span(span).items()
                ]
            try:
                futures.append(
                    await producer.send(
                        topic, value=bytes(payload), key=key.encode(), headers=record_headers
                    )
                )
                spans.append(span)
            except Exception as exc:
                # Later rows stay unsent so that no key overtakes an earlier event of its own.
                send_error = exc
                if span is not None:
                    tracing.fail_span(span, f"not sent: {type(exc).__name__}")
                    span.end()
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        for span, result in zip(spans, results, strict=False):
            if span is None:
                continue
            if isinstance(result, BaseException):
                tracing.fail_span(span, f"not acknowledged: {type(result).__name__}")
            span.end()
        acked = [
            row
            for row, result in zip(rows, results, strict=False)
            if not isinstance(result, BaseException)
        ]
        if acked:
            await conn.execute(
                sql.SQL("UPDATE {} SET published_at = now() WHERE id = ANY(%s)").format(
                    self._table
                ),
                ([row[0] for row in acked],),
            )
            now = datetime.now(UTC)
            lag = PUBLISH_LAG.labels(self._schema)
            per_topic: dict[str, int] = {}
            for row in acked:
                per_topic[row[1]] = per_topic.get(row[1], 0) + 1
                lag.observe(max(0.0, (now - row[5]).total_seconds()))
            for topic, count in per_topic.items():
                EVENTS_PUBLISHED.labels(self._schema, topic).inc(count)
        failures = [r for r in results if isinstance(r, BaseException)]
        if send_error is not None:
            failures.append(send_error)
        if failures:
            raise RuntimeError(
                f"{len(rows) - len(acked)} of {len(rows)} outbox events not acknowledged: "
                f"{failures[0]!r}"
            )
        return len(acked)

    async def _wait_for_wake(self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        """Return on a NOTIFY, after `poll_interval`, or as soon as `stop` is set."""
        if stop.is_set():
            return
        notified = asyncio.ensure_future(self._next_notify(conn))
        stopped = asyncio.ensure_future(stop.wait())
        done, pending = await asyncio.wait({notified, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        # a cancelled notifies() may leave the connection mid-read: it is only cancelled
        # when stopping, and the connection is closed right after
        await asyncio.gather(*pending, return_exceptions=True)
        if notified in done:
            notified.result()

    async def _next_notify(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # psycopg keeps the NOTIFYs that arrived while other queries ran and yields
        # them first, so a wake-up between two batches is never lost; the loop
        # drains them all and returns at once, or waits up to the poll interval.
        async for _ in conn.notifies(timeout=self._poll_interval, stop_after=1):
            pass

    async def _delete_old(self, conn: psycopg.AsyncConnection[Any]) -> None:
        cutoff = datetime.now(UTC) - self._retention
        # in slices, so a large backlog never holds one long transaction
        while True:
            cur = await conn.execute(
                sql.SQL(
                    "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE published_at < %s "
                    "ORDER BY id LIMIT %s)"
                ).format(t=self._table),
                (cutoff, _DELETE_SLICE),
            )
            if cur.rowcount < _DELETE_SLICE:
                return
