"""Postgres implementation of the audit log port and its unit of work."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy import Row, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from audit_service.adapters.retention_store import SqlRetentionStore
from audit_service.adapters.tables import audit_log
from audit_service.domain.entry import ENTRY_FIELDS, ChainedEntry, entry_of, entry_values
from audit_service.domain.query import AuditQuery
from audit_service.domain.verification import StoredEntry

#: First key of the two-int advisory locks this service takes ("AUDT").
_LOCK_CLASS = 0x41554454 & 0x7FFFFFFF


#: The data column's text (jsonb parses it; the keys' order is jsonb's own).
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def org_lock_key(org_id: str) -> int:
    """A stable signed 32-bit key per org (collisions only serialize two orgs)."""
    digest = hashlib.sha256(org_id.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


#: The columns COPY fills, in `_row`'s order (`id` and `recorded_at` take their
#: defaults, so ids follow the rows' order: the chain's).
_COPY_COLUMNS = (*ENTRY_FIELDS, "created_at", "prev_hash", "hash")
_COPY = f"COPY audit.audit_log ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
# Sorted keys, taken in array order by one scan: two transactions always take the keys
# they share in the same order, so they cannot deadlock.
_LOCK = "SELECT count(pg_advisory_xact_lock(%s::int, k)) FROM unnest(%s::int[]) AS t(k)"
# Which ids are stored, and each org's head (an index probe on (org_id, id)), at once.
_STORED = (
    "SELECT ARRAY(SELECT a.event_id FROM audit.audit_log a WHERE a.event_id = ANY(%s::uuid[])),"
    " (SELECT coalesce(jsonb_object_agg(o.org_id, h.hash), '{}')"
    " FROM unnest(%s::text[]) AS o(org_id) CROSS JOIN LATERAL (SELECT a.hash"
    " FROM audit.audit_log a WHERE a.org_id = o.org_id ORDER BY a.id DESC LIMIT 1) AS h)"
)


class SqlAuditLog:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_orgs(self, org_ids: Sequence[str]) -> None:
        keys = sorted({org_lock_key(org) for org in org_ids})
        if keys:
            pg = await _psycopg(await self._session.connection())  # the session's transaction
            await pg.execute(_LOCK, (_LOCK_CLASS, keys))

    async def find(self, query: AuditQuery) -> list[StoredEntry]:
        c = audit_log.c
        stmt = select(audit_log).where(c.org_id == query.org_id)
        if query.entity_id is not None:
            stmt = stmt.where(c.entity_id == query.entity_id)
        if query.action is not None:
            stmt = stmt.where(c.action == query.action)
        if query.actor_user_id is not None:
            stmt = stmt.where(c.actor_user_id == query.actor_user_id)
        if query.occurred_from is not None:
            stmt = stmt.where(c.occurred_at >= query.occurred_from)
        if query.occurred_to is not None:
            stmt = stmt.where(c.occurred_at <= query.occurred_to)
        if query.after is not None:
            stmt = stmt.where(
                tuple_(c.occurred_at, c.id) > tuple_(query.after.occurred_at, query.after.id)
            )
        stmt = stmt.order_by(c.occurred_at, c.id).limit(query.limit + 1)
        result = await self._session.execute(stmt)
        return [stored_entry(row) for row in result]

    async def chain(self, org_id: str, chunk: int = 1000) -> AsyncIterator[list[StoredEntry]]:
        last_id = 0
        while True:
            result = await self._session.execute(
                select(audit_log)
                .where(audit_log.c.org_id == org_id, audit_log.c.id > last_id)
                .order_by(audit_log.c.id)
                .limit(chunk)
            )
            rows = [stored_entry(row) for row in result]
            if not rows:
                return
            yield rows
            last_id = rows[-1].id

    async def org_ids(self) -> list[str]:
        result = await self._session.execute(
            select(func.distinct(audit_log.c.org_id)).order_by(audit_log.c.org_id)
        )
        return list(result.scalars())


def _row(chained: ChainedEntry) -> tuple[Any, ...]:
    e = chained.entry
    values = entry_values(e)
    values["data"] = _JSON.encode(e.data)
    return (*values.values(), e.occurred_at, chained.prev_hash, chained.hash)


def stored_entry(row: Row[Any]) -> StoredEntry:
    m = row._mapping
    return StoredEntry(
        id=m["id"],
        entry=entry_of(m),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
        recorded_at=m["recorded_at"],
    )


class SqlAppender:
    """One ingest batch's transaction on a pooled psycopg connection: BEGIN, the org
    locks and the look at what is stored go out in one round trip (pipeline mode), the
    rows as one COPY, then COMMIT. Rolled back unless committed (the pool's reset on
    return); a connection found broken is dropped from the pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._exit = AsyncExitStack()
        self._pg: Any = None

    async def __aenter__(self) -> SqlAppender:
        async with AsyncExitStack() as stack:
            connection = await stack.enter_async_context(self._engine.connect())
            self._pg = await _psycopg(connection)
            stack.push_async_callback(_drop_if_broken, connection, self._pg)
            self._exit = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._exit.__aexit__(*exc_info)

    async def lock_and_read(
        self, org_ids: Sequence[str], event_ids: Collection[uuid.UUID]
    ) -> tuple[set[uuid.UUID], dict[str, str]]:
        keys = sorted({org_lock_key(org) for org in org_ids})
        async with self._pg.pipeline():
            await self._pg.execute(_LOCK, (_LOCK_CLASS, keys))
            # a statement of its own: its snapshot is taken once the locks are held
            cursor = await self._pg.execute(_STORED, (list(event_ids), list(org_ids)))
            present, heads = await cursor.fetchone()
        return set(present), dict(heads)

    async def append(self, entries: Sequence[ChainedEntry]) -> None:
        if entries:
            async with self._pg.cursor() as cursor, cursor.copy(_COPY) as copy:
                for chained in entries:
                    await copy.write_row(_row(chained))

    async def commit(self) -> None:
        await self._pg.commit()


async def _psycopg(connection: AsyncConnection) -> Any:
    """The psycopg AsyncConnection under a pooled SQLAlchemy connection."""
    pg = (await connection.get_raw_connection()).driver_connection
    assert pg is not None
    return pg


async def _drop_if_broken(connection: AsyncConnection, pg: Any) -> None:
    """A connection that failed on the wire leaves the pool (the next one is fresh)."""
    if pg.broken or pg.closed:
        await connection.invalidate()


class SqlUnitOfWork:
    """One transaction; rolled back unless committed."""

    audit_log: SqlAuditLog
    retention: SqlRetentionStore

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        self._session = self._session_factory()
        self.audit_log = SqlAuditLog(self._session)
        self.retention = SqlRetentionStore(self._session)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._session is not None
        try:
            await self._session.rollback()
        finally:
            await self._session.close()
            self._session = None

    async def commit(self) -> None:
        assert self._session is not None
        await self._session.commit()
