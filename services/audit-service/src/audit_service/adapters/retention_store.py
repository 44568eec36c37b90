"""Postgres side of retention and checkpoints: policies, archives, checkpoints, pruning."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from audit_service.adapters.tables import archives, audit_log, checkpoints, retention_policies
from audit_service.domain.checkpoint import Checkpoint, Kind
from audit_service.domain.retention import LogRow


class SqlRetentionStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    # --- policies ---------------------------------------------------------------
    async def policy(self, org_id: str) -> int | None:
        result = await self._session.execute(
            select(retention_policies.c.retention_days).where(retention_policies.c.org_id == org_id)
        )
        return result.scalar_one_or_none()

    async def policies(self) -> dict[str, int]:
        result = await self._session.execute(
            select(retention_policies.c.org_id, retention_policies.c.retention_days)
        )
        return {org: days for org, days in result.tuples()}

    async def set_policy(self, org_id: str, days: int, updated_by: str | None) -> None:
        stmt = pg_insert(retention_policies).values(
            org_id=org_id, retention_days=days, updated_by=updated_by
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[retention_policies.c.org_id],
            set_={"retention_days": days, "updated_by": updated_by, "updated_at": func.now()},
        )
        await self._session.execute(stmt)

    # --- the log as retention sees it -------------------------------------------
    async def org_ids(self) -> list[str]:
        """Orgs with entries or checkpoints (an org whose log vanished still counts)."""
        result = await self._session.execute(
            text(
                "SELECT org_id FROM (SELECT DISTINCT org_id FROM audit.audit_log"
                " UNION SELECT DISTINCT org_id FROM audit.checkpoints) o ORDER BY org_id"
            )
        )
        return list(result.scalars())

    async def sealed_orgs(self) -> set[str]:
        result = await self._session.execute(
            text(
                "SELECT h.org_id FROM ("
                " SELECT DISTINCT ON (org_id) org_id, seq, entry_id, hash FROM audit.checkpoints"
                " WHERE kind = 'head' ORDER BY org_id, seq DESC, signed_at DESC) h"
                " JOIN audit.audit_log a"
                "  ON a.org_id = h.org_id AND a.id = h.entry_id AND a.hash = h.hash"
                " WHERE NOT EXISTS (SELECT 1 FROM audit.audit_log n"
                "  WHERE n.org_id = h.org_id AND n.id > h.entry_id)"
                " AND h.seq > coalesce((SELECT max(x.seq) FROM audit.checkpoints x"
                "  WHERE x.org_id = h.org_id AND x.kind = 'anchor'), 0)"
            )
        )
        return set(result.scalars())

    async def head(self, org_id: str) -> tuple[int, str] | None:
        """(id, hash) of the org's newest entry; None when it has none."""
        result = await self._session.execute(
            select(audit_log.c.id, audit_log.c.hash)
            .where(audit_log.c.org_id == org_id)
            .order_by(audit_log.c.id.desc())
            .limit(1)
        )
        row = result.first()
        return None if row is None else (int(row[0]), str(row[1]))

    async def entry_hash(self, org_id: str, entry_id: int) -> str | None:
        result = await self._session.execute(
            select(audit_log.c.hash).where(audit_log.c.org_id == org_id, audit_log.c.id == entry_id)
        )
        return result.scalar_one_or_none()

    async def count_after(self, org_id: str, after_id: int) -> int:
        result = await self._session.execute(
            select(func.count())
            .select_from(audit_log)
            .where(audit_log.c.org_id == org_id, audit_log.c.id > after_id)
        )
        return int(result.scalar_one())

    async def oldest_rows(self, org_id: str, limit: int, base_seq: int) -> list[LogRow]:
        result = await self._session.execute(
            select(audit_log)
            .where(audit_log.c.org_id == org_id)
            .order_by(audit_log.c.id)
            .limit(limit)
        )
        return [
            LogRow.of_columns(row._mapping, base_seq + n) for n, row in enumerate(result, start=1)
        ]

    # --- checkpoints --------------------------------------------------------------
    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        stmt = pg_insert(checkpoints).values(**asdict(checkpoint))
        await self._session.execute(stmt.on_conflict_do_nothing(constraint="uq_checkpoint"))

    async def anchors(self, org_id: str) -> list[Checkpoint]:
        return await self._checkpoints(org_id, "anchor", None)

    async def newest_anchor(self, org_id: str) -> Checkpoint | None:
        found = await self._checkpoints(org_id, "anchor", 1)
        return found[0] if found else None

    async def newest_head(self, org_id: str) -> Checkpoint | None:
        found = await self._checkpoints(org_id, "head", 1)
        return found[0] if found else None

    async def newest_heads(self) -> list[Checkpoint]:
        """The newest head checkpoint of every org (what the topic should hold)."""
        c = checkpoints.c
        result = await self._session.execute(
            select(checkpoints)
            .where(c.kind == "head")
            .distinct(c.org_id)
            .order_by(c.org_id, c.seq.desc(), c.signed_at.desc())
        )
        return [_checkpoint(row._mapping) for row in result]

    async def _checkpoints(self, org_id: str, kind: Kind, limit: int | None) -> list[Checkpoint]:
        c = checkpoints.c
        stmt = (
            select(checkpoints)
            .where(c.org_id == org_id, c.kind == kind)
            .order_by(c.seq.desc(), c.signed_at.desc())
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        result = await self._session.execute(stmt)
        return [_checkpoint(row._mapping) for row in result]

    # --- archives -----------------------------------------------------------------
    async def add_archive(self, values: dict[str, Any]) -> int:
        result = await self._session.execute(
            pg_insert(archives).values(**values).returning(archives.c.id)
        )
        return int(result.scalar_one())

    async def prune(self, archive_id: int) -> int:
        result = await self._session.execute(
            text("SELECT audit.prune_archived(:id)"), {"id": archive_id}
        )
        return int(result.scalar_one())

    async def archives(self, org_id: str) -> list[dict[str, Any]]:
        result = await self._session.execute(
            select(archives).where(archives.c.org_id == org_id).order_by(archives.c.first_id)
        )
        return [dict(row._mapping) for row in result]


def _checkpoint(m: Any) -> Checkpoint:
    return Checkpoint.of_columns(m)
