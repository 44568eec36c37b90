"""Transactional outbox: events commit with the state change; a relay publishes them.

Contract (implementation to be completed in this module):

- `outbox_table(metadata, schema)` declares `<schema>.outbox`:
  `id BIGSERIAL PK, event_id UUID UNIQUE, topic TEXT, key TEXT, headers JSONB,
  payload BYTEA, created_at TIMESTAMPTZ default now(), published_at TIMESTAMPTZ NULL`
  plus a partial index on id where published_at is null. Services include it in their
  SQLAlchemy metadata and create it in their Alembic migrations (op.create_table with
  the same columns, or `create_outbox_table(op, schema)` below).
- `add_event(session, envelope, table)` inserts the envelope as a row in the caller's
  transaction (and issues `NOTIFY <schema>_outbox` so the relay wakes at commit).
- `OutboxRelay(...).run(stop)` loops until `stop` is set: holds a session-level
  Postgres advisory lock (only one relay per schema publishes at a time; the others
  wait and take over when it dies), reads unpublished rows in id order (batch),
  publishes them with an idempotent aiokafka producer (acks=all), waits for every
  ack, then marks them published in one UPDATE. Wakes on LISTEN/NOTIFY or every
  `poll_interval` seconds. On Kafka errors it backs off and tries again; nothing is
  marked published that Kafka did not ack. Published rows older than
  `retention` are deleted in the background.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from orderflow_shared.messaging.envelope import Envelope


def outbox_table(metadata: MetaData, schema: str) -> Table:
    raise NotImplementedError


def create_outbox_table(op: object, schema: str) -> None:
    """Alembic helper: create the outbox table and its index with `op`."""
    raise NotImplementedError


async def add_event(session: AsyncSession, table: Table, envelope: Envelope) -> None:
    raise NotImplementedError


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        *,
        bootstrap_servers: str,
        lock_key: int | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        client_id: str = "outbox-relay",
    ) -> None:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        raise NotImplementedError
