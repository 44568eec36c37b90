"""Inbox: an idempotent consumer records each applied event id with its effect.

- `inbox_table(metadata, schema)` declares `<schema>.inbox`
  `(consumer TEXT, event_id UUID, applied_at TIMESTAMPTZ default now(), PK(consumer, event_id))`.
- `create_inbox_table(op, schema)`: Alembic helper.
- `await claim(session, table, consumer, event_id) -> bool`: INSERT ... ON CONFLICT DO
  NOTHING in the caller's transaction; True when this event is new (apply the
  effect), False when it was applied before (skip it).
- `await claim_many(session, table, consumer, event_ids) -> set[UUID]`: the same for a
  whole batch in one statement; returns the ids that are new.
- `claim_sql(table) -> str`: the same claim as SQL text for a statement's `WITH`
  (binds `:inbox_consumer` and `:inbox_event_ids`, a uuid[]; returns the new
  `event_id`s), so a consumer can claim and apply a batch in one statement.
- `await purge_inbox(engine, table, older_than=...) -> int`: delete the rows applied
  before a point, in slices; `purge_inbox_forever(...)` does it every `interval` until
  stopped (a loop for a role). Every service's inbox is purged this way. The retention
  must outlast the Kafka topics' retention, or a redelivered old event could be
  applied twice.

A concurrent claim of the same event id by another transaction blocks until that
transaction ends (primary-key uniqueness), so two replicas never both apply it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Table, Text, delete, func, select, tuple_
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orderflow_shared.timing import sleep_or_stop

INBOX_TABLE = "inbox"
#: rows deleted per transaction, so a large backlog never holds one long transaction
PURGE_SLICE = 10_000

_log = logging.getLogger(__name__)


def _columns() -> list[Column[Any]]:
    return [
        Column("consumer", Text, primary_key=True),
        Column("event_id", UUID(as_uuid=True), primary_key=True),
        Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def inbox_table(metadata: MetaData, schema: str) -> Table:
    existing = metadata.tables.get(f"{schema}.{INBOX_TABLE}")
    if existing is not None:
        return existing
    return Table(INBOX_TABLE, metadata, *_columns(), schema=schema)


def create_inbox_table(op: Any, schema: str) -> None:
    """Alembic helper: `create_inbox_table(op, "draft")` inside `upgrade()`."""
    op.create_table(INBOX_TABLE, *_columns(), schema=schema)


def drop_inbox_table(op: Any, schema: str) -> None:
    op.drop_table(INBOX_TABLE, schema=schema)


async def claim(session: AsyncSession, table: Table, consumer: str, event_id: uuid.UUID) -> bool:
    statement = (
        insert(table)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        .returning(table.c.event_id)
    )
    result = await session.execute(statement)
    return result.first() is not None


async def claim_many(
    session: AsyncSession, table: Table, consumer: str, event_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Claim a batch in one round trip; the ids returned are new (apply those only)."""
    unique = list(dict.fromkeys(event_ids))
    if not unique:
        return set()
    statement = (
        insert(table)
        .values([{"consumer": consumer, "event_id": event_id} for event_id in unique])
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        .returning(table.c.event_id)
    )
    result = await session.execute(statement)
    return {row[0] for row in result}


def claim_sql(table: Table) -> str:
    """`claim_many` as the text of a data-modifying CTE: `WITH claimed AS ({claim_sql})
    <statement on the rows whose event_id is IN (SELECT event_id FROM claimed)>`."""
    return (
        f"INSERT INTO {table.fullname} (consumer, event_id)"  # noqa: S608 (the table's own name)
        " SELECT :inbox_consumer, e FROM unnest(CAST(:inbox_event_ids AS uuid[])) AS e"
        " ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id"
    )


async def purge_inbox(
    engine: AsyncEngine, table: Table, *, older_than: datetime, slice_size: int = PURGE_SLICE
) -> int:
    """Delete the inbox rows applied before `older_than` (in slices of `slice_size`,
    one transaction each); how many were deleted."""
    deleted = 0
    while True:
        oldest = (
            select(table.c.consumer, table.c.event_id)
            .where(table.c.applied_at < older_than)
            .limit(slice_size)
        )
        statement = delete(table).where(tuple_(table.c.consumer, table.c.event_id).in_(oldest))
        async with engine.begin() as conn:
            count = (await conn.execute(statement)).rowcount
        deleted += count
        if count < slice_size:
            return deleted


async def purge_inbox_forever(
    stop: asyncio.Event,
    engine: AsyncEngine,
    table: Table,
    *,
    retention: timedelta,
    interval: float,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Purge rows older than `retention` every `interval` seconds until `stop`; a
    failure (the database may be down) is logged and tried again next round."""
    while not stop.is_set():
        try:
            purged = await purge_inbox(engine, table, older_than=clock() - retention)
            if purged:
                _log.info("purged %d inbox rows of %s", purged, table.fullname)
        except Exception as exc:
            _log.warning("inbox purge of %s failed: %s", table.fullname, type(exc).__name__)
        await sleep_or_stop(stop, interval)
