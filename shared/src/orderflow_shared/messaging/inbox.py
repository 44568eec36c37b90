"""Inbox: an idempotent consumer records each applied event id with its effect.

- `inbox_table(metadata, schema)` declares `<schema>.inbox`
  `(consumer TEXT, event_id UUID, applied_at TIMESTAMPTZ default now(), PK(consumer, event_id))`.
- `create_inbox_table(op, schema)`: Alembic helper.
- `await claim(session, table, consumer, event_id) -> bool`: INSERT ... ON CONFLICT DO
  NOTHING in the caller's transaction; True when this event is new (apply the
  effect), False when it was applied before (skip it).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table
    from sqlalchemy.ext.asyncio import AsyncSession


def inbox_table(metadata: MetaData, schema: str) -> Table:
    raise NotImplementedError


def create_inbox_table(op: object, schema: str) -> None:
    raise NotImplementedError


async def claim(session: AsyncSession, table: Table, consumer: str, event_id: uuid.UUID) -> bool:
    raise NotImplementedError
