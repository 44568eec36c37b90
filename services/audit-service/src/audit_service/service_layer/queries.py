"""Reading one org's log a page at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit_service.domain.query import AuditQuery, Position
from audit_service.domain.verification import StoredEntry
from audit_service.service_layer.ports import UnitOfWork


@dataclass(frozen=True)
class Page:
    entries: list[StoredEntry]
    next_cursor: str | None


async def list_entries(uow_factory: Callable[[], UnitOfWork], query: AuditQuery) -> Page:
    async with uow_factory() as uow:
        rows = await uow.audit_log.find(query)
    if len(rows) <= query.limit:
        return Page(entries=rows, next_cursor=None)
    page = rows[: query.limit]
    last = page[-1]
    return Page(
        entries=page,
        next_cursor=Position(occurred_at=last.entry.occurred_at, id=last.id).encode(),
    )
