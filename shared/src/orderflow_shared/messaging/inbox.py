"""Inbox: an idempotent consumer records each applied event id with its effect.

- `inbox_table(metadata, schema)` declares `<schema>.inbox`
  `(consumer TEXT, event_id UUID, applied_at TIMESTAMPTZ default now(), PK(consumer, event_id))`.
- `create_inbox_table(op, schema)`: Alembic helper.
- `await claim(session, table, consumer, event_id) -> bool`: INSERT ... ON CONFLICT DO
  NOTHING in the caller's transaction; True when this event is new (apply the
  effect), False when it was applied before (skip it).
- `await claim_many(session, table, consumer, event_ids) -> set[UUID]`: the same for a
  whole batch in one statement; returns the ids that are new.

A concurrent claim of the same event id by another transaction blocks until that
transaction ends (primary-key uniqueness), so two replicas never both apply it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

INBOX_TABLE = "inbox"


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
