"""Database helpers.

- `make_engine(url, pool_size=20) -> AsyncEngine` (SQLAlchemy asyncio over psycopg 3,
  pool_pre_ping, so a restarted Postgres is reconnected without a service restart).
- `make_session_factory(engine) -> async_sessionmaker[AsyncSession]` (expire_on_commit=False).
- `await db_reachable(engine) -> bool` for /readyz (SELECT 1 with a short timeout).
- `sync_url(url)` turns an async URL into the one Alembic uses.
- `libpq_url(url)` turns a SQLAlchemy URL into a plain `postgresql://` conninfo for psycopg.
- `await held_connection(conninfo, application_name)`: a psycopg connection that a loop
  holds for long (a relay's advisory lock, a LISTEN): autocommit, TCP keepalives.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from orderflow_shared import tracing

_log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """The URL with the `postgresql+psycopg` driver (psycopg 3 speaks async and sync)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The URL Alembic uses: same database, psycopg 3 driver (works synchronously)."""
    return async_url(url)


def libpq_url(url: str) -> str:
    """A `postgresql://...` conninfo for psycopg itself (no SQLAlchemy driver suffix)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def held_connection(conninfo: str, application_name: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit psycopg connection for a loop that holds it for long; a half-open
    connection fails (and frees its locks and LISTENs) in seconds, not hours."""
    return await psycopg.AsyncConnection.connect(
        conninfo,
        autocommit=True,
        connect_timeout=10,
        application_name=application_name,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )


def make_engine(url: str, pool_size: int = 20, **kwargs: Any) -> AsyncEngine:
    """An engine whose pool keeps every connection it opens.

    No overflow by default: an overflow connection is closed again when it is returned,
    and under load that means a fresh TCP + SCRAM handshake per request; a request
    rather waits for a pooled connection (`pool_timeout`). Pre-ping lets a service ride
    out a Postgres restart without restarting itself.
    """
    options: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_pre_ping": True,
        "pool_recycle": 1800,
    }
    options.update(kwargs)
    engine = create_async_engine(async_url(url), **options)
    tracing.instrument_engine(engine)  # SQL spans, when this process exports traces
    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def db_reachable(engine: AsyncEngine, timeout: float = 2.0) -> bool:  # noqa: ASYNC109
    """One fresh try after a failure: without pre-ping, a pooled connection that Postgres
    dropped (a restart) fails once, and SQLAlchemy then invalidates the pool."""
    try:
        async with asyncio.timeout(timeout):
            for attempt in (1, 2):
                try:
                    async with engine.connect() as conn:
                        await conn.execute(text("SELECT 1"))
                    return True
                except DBAPIError as exc:
                    if attempt == 2 or not exc.connection_invalidated:
                        raise
    except Exception as exc:  # any failure means "not ready", never an error page
        _log.warning("database not reachable: %s", type(exc).__name__)
    return False
