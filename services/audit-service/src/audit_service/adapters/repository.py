"""Postgres implementation of the audit log port and its unit of work."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

from sqlalchemy import Row, func, insert, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audit_service.adapters.retention_store import SqlRetentionStore
from audit_service.adapters.tables import audit_log
from audit_service.domain.entry import ChainedEntry, entry_of, entry_values
from audit_service.domain.query import AuditQuery
from audit_service.domain.verification import StoredEntry

#: First key of the two-int advisory locks this service takes ("AUDT").
_LOCK_CLASS = 0x41554454 & 0x7FFFFFFF


def org_lock_key(org_id: str) -> int:
    """A stable signed 32-bit key per org (collisions only serialize two orgs)."""
    digest = hashlib.sha256(org_id.encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


class SqlAuditLog:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_orgs(self, org_ids: Sequence[str]) -> None:
        keys = sorted({org_lock_key(org) for org in org_ids})
        if not keys:
            return
        # Sorted keys, taken in array order by one scan: two transactions always take
        # the keys they share in the same order, so they cannot deadlock.
        await self._session.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(:cls, k))"
                " FROM unnest(CAST(:keys AS int[])) AS t(k)"
            ),
            {"cls": _LOCK_CLASS, "keys": keys},
        )

    async def existing_event_ids(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        if not event_ids:
            return set()
        result = await self._session.execute(
            select(audit_log.c.event_id).where(audit_log.c.event_id.in_(list(event_ids)))
        )
        return set(result.scalars())

    async def chain_heads(self, org_ids: Collection[str]) -> dict[str, str]:
        if not org_ids:
            return {}
        # One round trip; each org's head is an index probe on (org_id, id).
        result = await self._session.execute(
            text(
                "SELECT o.org_id, h.hash FROM unnest(CAST(:orgs AS text[])) AS o(org_id)"
                " CROSS JOIN LATERAL (SELECT a.hash FROM audit.audit_log a"
                " WHERE a.org_id = o.org_id ORDER BY a.id DESC LIMIT 1) AS h"
            ),
            {"orgs": sorted(org_ids)},
        )
        return {org: head for org, head in result.tuples()}

    async def append(self, entries: Sequence[ChainedEntry]) -> None:
        if not entries:
            return
        # executemany is sent as multi-row INSERTs in list order: ids follow the chain.
        await self._session.execute(insert(audit_log), [_row(e) for e in entries])

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


def _row(chained: ChainedEntry) -> dict[str, Any]:
    e = chained.entry
    return {
        **entry_values(e),
        "created_at": e.occurred_at,
        "data": dict(e.data),
        "prev_hash": chained.prev_hash,
        "hash": chained.hash,
    }


def stored_entry(row: Row[Any]) -> StoredEntry:
    m = row._mapping
    return StoredEntry(
        id=m["id"],
        entry=entry_of(m),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
        recorded_at=m["recorded_at"],
    )


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
