"""Wake-ups between processes through Postgres LISTEN/NOTIFY.

A role that records work (export-service's `consume`) wakes the roles that do it
(its `worker`s), which may run in other processes or hosts, without them polling fast:

- `Notifier(engine, channel)`: calling it sends one `NOTIFY channel` soon (calls made
  while one is on its way are folded into it); a failure is logged, never raised: the
  listeners' poll interval is the fallback, so a lost wake-up only costs latency.
- `listen(url, channel, on_notify, stop)`: a `Runner` body that LISTENs on `channel` and
  calls `on_notify()` for each notification until `stop`; a broken connection raises,
  and the shared supervisor starts it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from psycopg import sql
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow_shared.db import held_connection, libpq_url

log = logging.getLogger(__name__)

#: how long one wait for a notification lasts before `stop` is looked at again
LISTEN_SLICE_SECONDS = 1.0


class Notifier:
    """`notifier()` sends `NOTIFY <channel>` from a task of its own (at most one at a time)."""

    def __init__(self, engine: AsyncEngine, channel: str) -> None:
        self._engine = engine
        self._channel = channel
        self._pending: asyncio.Task[None] | None = None
        self._again = False

    def __call__(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._again = True  # the running send may have missed what was just recorded
            return
        self._pending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while True:
            self._again = False
            try:
                async with self._engine.connect() as conn:
                    await conn.execute(text("SELECT pg_notify(:c, '')"), {"c": self._channel})
                    await conn.commit()
            except Exception as exc:  # the listeners poll as well
                log.warning("NOTIFY %s failed: %s", self._channel, type(exc).__name__)
                return
            if not self._again:
                return


async def listen(
    url: str, channel: str, on_notify: Callable[[], None], stop: asyncio.Event
) -> None:
    """LISTEN on `channel` and call `on_notify()` per notification until `stop`."""
    conn = await held_connection(libpq_url(url), f"listen:{channel}")
    try:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        on_notify()  # what was announced before this LISTEN is due as well
        while not stop.is_set():
            async for _ in conn.notifies(timeout=LISTEN_SLICE_SECONDS, stop_after=1):
                on_notify()
    finally:
        await conn.close()
