"""Apply what other services report: export results and ERP connector changes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from draft_api.domain.connector import ErpConnector
from draft_api.domain.model import DraftOrder
from draft_api.service_layer.ports import UnitOfWork


@dataclass(frozen=True)
class ExportResult:
    event_id: uuid.UUID
    org_id: str
    draft_id: uuid.UUID
    erp_export_id: uuid.UUID
    sent: bool
    at: datetime
    error: dict[str, object] | None = None


async def record_export_result(uow: UnitOfWork, result: ExportResult) -> bool:
    """Apply one export.sent/export.failed once; True when the draft's status changed."""

    async def finish(draft: DraftOrder) -> bool:
        if result.sent:
            changed = draft.export_sent(result.erp_export_id, now=result.at)
        else:
            changed = draft.export_failed(
                result.erp_export_id, error=result.error or {}, now=result.at
            )
        await uow.drafts.save(draft)
        return changed

    return await _apply_once(uow, result.event_id, result.org_id, result.draft_id, finish)


async def record_export_delay(
    uow: UnitOfWork,
    event_id: uuid.UUID,
    org_id: str,
    draft_id: uuid.UUID,
    erp_export_id: uuid.UUID,
    waiting: dict[str, object],
) -> bool:
    """Apply one export.delayed once: the push attempt shows that it waits."""

    async def wait(draft: DraftOrder) -> bool:
        if not draft.export_delayed(erp_export_id, waiting=waiting):
            return False
        await uow.drafts.save(draft)
        return True

    return await _apply_once(uow, event_id, org_id, draft_id, wait)


async def _apply_once(
    uow: UnitOfWork,
    event_id: uuid.UUID,
    org_id: str,
    draft_id: uuid.UUID,
    apply: Callable[[DraftOrder], Awaitable[bool]],
) -> bool:
    """Apply one event to the org's draft, under its row lock, once (the inbox drops a
    redelivery); what `apply` says changed. An unknown draft changes nothing."""
    async with uow:
        if not await uow.inbox.claim(event_id):
            return False
        draft = await uow.drafts.get(org_id, draft_id, lock=True)
        changed = draft is not None and await apply(draft)
        await uow.commit()
    return changed


async def record_connector_change(
    uow: UnitOfWork,
    event_id: uuid.UUID,
    connector: ErpConnector,
    *,
    keyed_by_connection: bool = True,
) -> bool:
    """Apply one erp_connection.changed once; False when it was seen before.

    The order of changes is the order of the topic, not a time the record claims:
    `erp_connection.changed` is keyed by connection id, so one connection's records sit
    in one partition in the order export-service committed them, and the last one read
    wins (the inbox drops redeliveries; a replay from the start ends on the same state).
    A `changed_at` far in the future therefore holds only until the next real change.
    Records written while the topic was keyed by the org (before export-service
    restated every connection keyed by its id) may sit in another partition than the
    newer ones: they only fill in a connection not known yet, never overwrite one.
    A record never moves a connection to another org.
    """
    async with uow:
        if not await uow.inbox.claim(event_id):
            return False
        await uow.connectors.upsert(connector, overwrite=keyed_by_connection)
        await uow.commit()
    return True
