"""Postgres implementations of the repository ports (one AsyncSession per unit of work)."""

from __future__ import annotations

import copy
import functools
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from orderflow_shared.messaging import inbox
from sqlalchemy import Table, cast, delete, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONPATH, insert
from sqlalchemy.ext.asyncio import AsyncSession

from draft_api.adapters.orm import Tables
from draft_api.domain import errors
from draft_api.domain.connector import ErpConnector
from draft_api.domain.idempotency import IdempotencyRecord, Operation
from draft_api.domain.model import (
    DraftLine,
    DraftOrder,
    DraftStatus,
    ExportStatus,
    PushAttempt,
)
from draft_api.domain.org_settings import OrgSettings
from draft_api.domain.validation import Issue
from draft_api.service_layer.ports import ISSUES_IN_SUMMARY, DraftSummary


class SqlDraftRepository:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self.session = session
        self.t = tables
        # What was loaded, so save() writes only what changed.
        self._loaded_lines: dict[uuid.UUID, list[DraftLine]] = {}
        self._loaded_attempts: dict[uuid.UUID, list[PushAttempt]] = {}
        #: the drafts added or saved: the unit of work collects their events at commit
        self.seen: list[DraftOrder] = []

    async def add(self, draft: DraftOrder) -> None:
        await self.session.execute(
            self.t.draft_order.insert().values(id=draft.id, **self._header(draft), version=0)
        )
        await self._write_lines(draft)
        await self._write_attempts(draft, [])
        self._remember(draft)
        self.seen.append(draft)

    async def get(
        self, org_id: str, draft_id: uuid.UUID, *, lock: bool = False
    ) -> DraftOrder | None:
        query = select(self.t.draft_order).where(
            self.t.draft_order.c.id == draft_id, self.t.draft_order.c.org_id == org_id
        )
        if lock:
            query = query.with_for_update()
        row = (await self.session.execute(query)).mappings().first()
        if row is None:
            return None
        drafts = await self._hydrate([row])
        return drafts[0]

    async def save(self, draft: DraftOrder) -> None:
        d = self.t.draft_order
        result = await self.session.execute(
            update(d)
            .where(d.c.id == draft.id, d.c.version == draft.version)
            .values(**self._header(draft), version=d.c.version + 1)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise errors.ConcurrentModification()
        draft.version += 1
        if draft.lines != self._loaded_lines.get(draft.id):
            await self.session.execute(
                delete(self.t.draft_order_line).where(
                    self.t.draft_order_line.c.draft_id == draft.id
                )
            )
            await self._write_lines(draft)
        await self._write_attempts(draft, self._loaded_attempts.get(draft.id, []))
        self._remember(draft)
        self.seen.append(draft)

    async def page(
        self,
        org_id: str,
        *,
        status: DraftStatus | None,
        limit: int,
        offset: int,
        search: str | None = None,
    ) -> tuple[list[DraftSummary], int]:
        d = self.t.draft_order
        where = [d.c.org_id == org_id]
        if status is not None:
            where.append(d.c.status == status.value)
        if search:
            pattern = "%" + _like_escaped(search) + "%"
            where.append(
                or_(
                    d.c.external_ref.ilike(pattern, escape="\\"),
                    d.c.customer_id.ilike(pattern, escape="\\"),
                )
            )
        total = (
            await self.session.execute(select(func.count()).select_from(d).where(*where))
        ).scalar_one()
        header = [c for c in d.c if c.name != "validation_issues"]
        issues_head = func.jsonb_path_query_array(
            d.c.validation_issues, cast(literal(f"$[0 to {ISSUES_IN_SUMMARY - 1}]"), JSONPATH)
        )
        rows = (
            (
                await self.session.execute(
                    select(
                        *header,
                        issues_head.label("issues_head"),
                        func.jsonb_array_length(d.c.validation_issues).label("issue_count"),
                    )
                    .where(*where)
                    .order_by(d.c.created_at.desc(), d.c.id)
                    .limit(limit)
                    .offset(offset)
                )
            )
            .mappings()
            .all()
        )
        return await self._summaries(list(rows)), int(total)

    async def _summaries(self, rows: list[Any]) -> list[DraftSummary]:
        """Line counts and totals per currency aggregated in SQL; lines stay in Postgres."""
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        ln = self.t.draft_order_line
        per_currency: dict[uuid.UUID, dict[str, tuple[int, Decimal]]] = defaultdict(dict)
        aggregates = (
            select(
                ln.c.draft_id,
                ln.c.currency,
                func.count().label("lines"),
                func.sum(ln.c.quantity * ln.c.unit_price).label("total"),
            )
            .where(ln.c.draft_id.in_(ids))
            .group_by(ln.c.draft_id, ln.c.currency)
        )
        for r in (await self.session.execute(aggregates)).mappings():
            per_currency[r["draft_id"]][r["currency"]] = (int(r["lines"]), Decimal(r["total"]))
        attempts = await self._attempts(ids)
        summaries = []
        for row in rows:
            sums = per_currency[row["id"]]
            summaries.append(
                DraftSummary(
                    id=row["id"],
                    org_id=row["org_id"],
                    customer_id=row["customer_id"],
                    external_ref=row["external_ref"],
                    status=DraftStatus(row["status"]),
                    currency=row["currency"],
                    line_count=sum(count for count, _ in sums.values()),
                    total=sum((amount for _, amount in sums.values()), Decimal(0)),
                    totals={currency: amount for currency, (_, amount) in sums.items()},
                    issue_count=int(row["issue_count"] or 0),
                    created_by_user_id=row["created_by_user_id"],
                    approved_by_user_id=row["approved_by_user_id"],
                    approved_at=row["approved_at"],
                    created_at=row["created_at"],
                    updated_at=row["updated_at"],
                    current_export_id=row["current_export_id"],
                    version=row["version"],
                    validation_issues=[Issue(**i) for i in row["issues_head"] or []],
                    attempts=attempts[row["id"]],
                    last_edited_by_user_id=row["last_edited_by_user_id"],
                )
            )
        return summaries

    async def external_ref_taken(
        self, org_id: str, external_ref: str, *, exclude: uuid.UUID
    ) -> bool:
        d = self.t.draft_order
        query = select(
            exists().where(
                d.c.org_id == org_id, d.c.external_ref == external_ref, d.c.id != exclude
            )
        )
        return bool((await self.session.execute(query)).scalar())

    async def export_status(self, org_id: str, export_id: uuid.UUID) -> ExportStatus | None:
        p = self.t.push_attempt
        value = (
            await self.session.execute(
                select(p.c.status).where(p.c.erp_export_id == export_id, p.c.org_id == org_id)
            )
        ).scalar()
        return ExportStatus(value) if value is not None else None

    # -- mapping -----------------------------------------------------------------

    def _header(self, draft: DraftOrder) -> dict[str, Any]:
        return {
            "org_id": draft.org_id,
            "customer_id": draft.customer_id,
            "external_ref": draft.external_ref,
            "status": draft.status.value,
            "currency": draft.currency,
            "validation_issues": [
                {"field": i.field, "code": i.code, "message": i.message}
                for i in draft.validation_issues
            ],
            "created_by_user_id": draft.created_by_user_id,
            "approved_by_user_id": draft.approved_by_user_id,
            "approved_at": draft.approved_at,
            "created_at": draft.created_at,
            "updated_at": draft.updated_at,
            "current_export_id": draft.current_export_id,
            "last_edited_by_user_id": draft.last_edited_by_user_id,
        }

    async def _write_lines(self, draft: DraftOrder) -> None:
        if not draft.lines:
            return
        await self.session.execute(
            self.t.draft_order_line.insert(),
            [
                {
                    "draft_id": draft.id,
                    "line_no": line.line_no,
                    "sku": line.sku,
                    "description": line.description,
                    "quantity": line.quantity,
                    "unit": line.unit,
                    "unit_price": line.unit_price,
                    "currency": line.currency,
                }
                for line in draft.lines
            ],
        )

    async def _write_attempts(self, draft: DraftOrder, loaded: list[PushAttempt]) -> None:
        changed = [a for a in draft.attempts if a not in loaded]
        for attempt in changed:
            values = {
                "erp_export_id": attempt.erp_export_id,
                "draft_id": draft.id,
                "org_id": draft.org_id,
                "attempt": attempt.attempt,
                "status": attempt.status.value,
                "error_json": attempt.error,
                "requested_by_user_id": attempt.requested_by_user_id,
                "requested_at": attempt.requested_at,
                "finished_at": attempt.finished_at,
            }
            await self.session.execute(_attempt_upsert(self.t.push_attempt), values)

    def _remember(self, draft: DraftOrder) -> None:
        self._loaded_lines[draft.id] = list(draft.lines)
        self._loaded_attempts[draft.id] = copy.deepcopy(draft.attempts)

    async def _hydrate(self, rows: list[Any]) -> list[DraftOrder]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        lines: dict[uuid.UUID, list[DraftLine]] = defaultdict(list)
        ln = self.t.draft_order_line
        for r in (
            await self.session.execute(
                select(ln).where(ln.c.draft_id.in_(ids)).order_by(ln.c.draft_id, ln.c.line_no)
            )
        ).mappings():
            lines[r["draft_id"]].append(
                DraftLine(
                    line_no=r["line_no"],
                    sku=r["sku"],
                    description=r["description"],
                    quantity=r["quantity"],
                    unit=r["unit"],
                    unit_price=r["unit_price"],
                    currency=r["currency"],
                )
            )
        attempts = await self._attempts(ids)
        drafts = []
        for row in rows:
            draft = DraftOrder(
                id=row["id"],
                org_id=row["org_id"],
                customer_id=row["customer_id"],
                external_ref=row["external_ref"],
                status=DraftStatus(row["status"]),
                lines=lines[row["id"]],
                created_by_user_id=row["created_by_user_id"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
                validation_issues=[Issue(**i) for i in row["validation_issues"] or []],
                approved_by_user_id=row["approved_by_user_id"],
                approved_at=row["approved_at"],
                current_export_id=row["current_export_id"],
                attempts=attempts[row["id"]],
                version=row["version"],
                last_edited_by_user_id=row["last_edited_by_user_id"],
            )
            self._remember(draft)
            drafts.append(draft)
        return drafts

    async def _attempts(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[PushAttempt]]:
        attempts: dict[uuid.UUID, list[PushAttempt]] = defaultdict(list)
        p = self.t.push_attempt
        for r in (
            await self.session.execute(
                select(p).where(p.c.draft_id.in_(ids)).order_by(p.c.draft_id, p.c.attempt)
            )
        ).mappings():
            attempts[r["draft_id"]].append(
                PushAttempt(
                    erp_export_id=r["erp_export_id"],
                    attempt=r["attempt"],
                    status=ExportStatus(r["status"]),
                    requested_by_user_id=r["requested_by_user_id"],
                    requested_at=r["requested_at"],
                    finished_at=r["finished_at"],
                    error=r["error_json"],
                )
            )
        return attempts


class SqlConnectorReadModel:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self.session = session
        self.t = tables

    async def has_active(self, org_id: str) -> bool:
        c = self.t.erp_connector
        query = select(exists().where(c.c.org_id == org_id, c.c.is_active.is_(True)))
        return bool((await self.session.execute(query)).scalar())

    async def upsert(self, connector: ErpConnector, *, overwrite: bool = True) -> None:
        c = self.t.erp_connector
        stmt = insert(c).values(
            connection_id=connector.connection_id,
            org_id=connector.org_id,
            name=connector.name,
            connector_type=connector.connector_type,
            is_active=connector.is_active,
            changed_at=connector.changed_at,
        )
        if not overwrite:
            await self.session.execute(
                stmt.on_conflict_do_nothing(index_elements=["connection_id"])
            )
            return
        # arrival order: the record read last wins (see results.record_connector_change)
        stmt = stmt.on_conflict_do_update(
            index_elements=["connection_id"],
            set_={
                "name": stmt.excluded.name,
                "connector_type": stmt.excluded.connector_type,
                "is_active": stmt.excluded.is_active,
                "changed_at": stmt.excluded.changed_at,
            },
            where=c.c.org_id == stmt.excluded.org_id,
        )
        await self.session.execute(stmt)


class SqlOrgSettings:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self.session = session
        self.t = tables

    async def get(self, org_id: str) -> OrgSettings:
        o = self.t.org_settings
        row = (await self.session.execute(select(o).where(o.c.org_id == org_id))).mappings().first()
        if row is None:
            return OrgSettings(org_id=org_id)
        return OrgSettings(
            org_id=org_id,
            four_eyes=bool(row["four_eyes"]),
            updated_by_user_id=row["updated_by_user_id"],
            updated_at=row["updated_at"],
        )

    async def save(self, settings: OrgSettings) -> None:
        o = self.t.org_settings
        stmt = insert(o).values(
            org_id=settings.org_id,
            four_eyes=settings.four_eyes,
            updated_by_user_id=settings.updated_by_user_id,
            updated_at=settings.updated_at,
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["org_id"],
                set_={
                    "four_eyes": stmt.excluded.four_eyes,
                    "updated_by_user_id": stmt.excluded.updated_by_user_id,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )


def _like_escaped(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqlIdempotencyKeys:
    def __init__(self, session: AsyncSession, tables: Tables) -> None:
        self.session = session
        self.t = tables

    async def get(self, org_id: str, key: str) -> IdempotencyRecord | None:
        k = self.t.idempotency_key
        row = (
            (await self.session.execute(select(k).where(k.c.org_id == org_id, k.c.key == key)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        return IdempotencyRecord(
            org_id=row["org_id"],
            key=row["key"],
            operation=Operation(row["operation"]),
            draft_id=row["draft_id"],
            fingerprint=row["request_fingerprint"],
            erp_export_id=row["erp_export_id"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )

    async def add(self, record: IdempotencyRecord) -> None:
        k = self.t.idempotency_key
        stmt = (
            insert(k)
            .values(
                org_id=record.org_id,
                key=record.key,
                operation=record.operation.value,
                draft_id=record.draft_id,
                request_fingerprint=record.fingerprint,
                erp_export_id=record.erp_export_id,
                created_at=record.created_at,
                expires_at=record.expires_at,
            )
            .on_conflict_do_nothing(index_elements=["org_id", "key"])
            .returning(k.c.key)
        )
        if (await self.session.execute(stmt)).first() is None:
            raise errors.IdempotencyKeyInFlight()

    async def delete(self, org_id: str, key: str) -> None:
        k = self.t.idempotency_key
        await self.session.execute(delete(k).where(k.c.org_id == org_id, k.c.key == key))


class SqlInbox:
    def __init__(self, session: AsyncSession, tables: Tables, consumer: str) -> None:
        self.session = session
        self.t = tables
        self.consumer = consumer

    async def claim(self, event_id: uuid.UUID) -> bool:
        return bool(await inbox.claim(self.session, self.t.inbox, self.consumer, event_id))


@functools.cache
def _attempt_upsert(table: Table) -> Any:
    """Built once per table: compiling `excluded` costs more than the round trip."""
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["erp_export_id"],
        set_={
            "status": stmt.excluded.status,
            "error_json": stmt.excluded.error_json,
            "finished_at": stmt.excluded.finished_at,
        },
    )
