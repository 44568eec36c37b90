"""Background clean-up: expired idempotency keys and inbox entries past redelivery."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orderflow_shared.messaging.inbox import purge_inbox
from orderflow_shared.timing import sleep_or_stop
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from draft_api.adapters.orm import Tables

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    idempotency_keys: int
    inbox_entries: int


async def purge(
    engine: AsyncEngine, tables: Tables, *, now: datetime, inbox_retention: timedelta
) -> Purged:
    """Delete what can no longer matter: keys past `expires_at`, inbox rows past retention
    (the shared `purge_inbox`, as every service's inbox).

    Inbox retention must outlast the Kafka topics' retention, or a redelivered old
    event could be applied twice.
    """
    async with engine.begin() as conn:
        keys = await conn.execute(
            delete(tables.idempotency_key).where(tables.idempotency_key.c.expires_at < now)
        )
    inbox = await purge_inbox(engine, tables.inbox, older_than=now - inbox_retention)
    return Purged(keys.rowcount, inbox)


async def run_housekeeping(
    stop: asyncio.Event,
    engine: AsyncEngine,
    tables: Tables,
    *,
    interval: float,
    inbox_retention: timedelta,
) -> None:
    """Purge every `interval` seconds until `stop` is set; errors are logged and retried."""
    while not stop.is_set():
        try:
            purged = await purge(
                engine, tables, now=datetime.now(UTC), inbox_retention=inbox_retention
            )
            if purged.idempotency_keys or purged.inbox_entries:
                _log.info("housekeeping purged %s", purged)
        except Exception as exc:  # the database may be down; try again next round
            _log.warning("housekeeping failed: %s", type(exc).__name__)
        await sleep_or_stop(stop, interval)
