"""Apply what other services report: export results and ERP connector changes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
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


#: what one reported event does to the open unit of work; True when something changed
Effect = Callable[[UnitOfWork], Awaitable[bool]]


@dataclass(frozen=True)
class Reported:
    """An event another service reported, and its effect (applied once per event id)."""

    event_id: uuid.UUID
    effect: Effect


async def apply_reported(uow: UnitOfWork, events: Sequence[Reported]) -> list[bool]:
    """Apply a batch of reported events in one transaction, each at most once: one
    inbox statement claims them all, and an id claimed before (a redelivery) or seen
    earlier in the batch changes nothing. What each event changed, in order."""
    changed: list[bool] = []
    async with uow:
        new = await uow.inbox.claim_many([event.event_id for event in events])
        for event in events:
            fresh = event.event_id in new
            new.discard(event.event_id)
            changed.append(fresh and await event.effect(uow))
        await uow.commit()
    return changed


async def _apply_one(uow: UnitOfWork, event: Reported) -> bool:
    return (await apply_reported(uow, [event]))[0]


def export_result(result: ExportResult) -> Reported:
    """An export.sent/export.failed: moves the draft's current export on."""

    async def finish(uow: UnitOfWork, draft: DraftOrder) -> bool:
        if result.sent:
            changed = draft.export_sent(result.erp_export_id, now=result.at)
        else:
            changed = draft.export_failed(
                result.erp_export_id, error=result.error or {}, now=result.at
            )
        await uow.drafts.save(draft)
        return changed

    return Reported(result.event_id, _on_draft(result.org_id, result.draft_id, finish))


def export_delay(
    event_id: uuid.UUID,
    org_id: str,
    draft_id: uuid.UUID,
    erp_export_id: uuid.UUID,
    waiting: dict[str, object],
) -> Reported:
    """An export.delayed: the push attempt shows that it waits."""

    async def wait(uow: UnitOfWork, draft: DraftOrder) -> bool:
        if not draft.export_delayed(erp_export_id, waiting=waiting):
            return False
        await uow.drafts.save(draft)
        return True

    return Reported(event_id, _on_draft(org_id, draft_id, wait))


def _on_draft(
    org_id: str,
    draft_id: uuid.UUID,
    apply: Callable[[UnitOfWork, DraftOrder], Awaitable[bool]],
) -> Effect:
    """`apply` to the org's draft under its row lock; an unknown draft changes nothing."""

    async def effect(uow: UnitOfWork) -> bool:
        draft = await uow.drafts.get(org_id, draft_id, lock=True)
        return draft is not None and await apply(uow, draft)

    return effect


def connector_change(
    event_id: uuid.UUID, connector: ErpConnector, *, keyed_by_connection: bool = True
) -> Reported:
    """An erp_connection.changed (see `record_connector_change`)."""

    async def upsert(uow: UnitOfWork) -> bool:
        await uow.connectors.upsert(connector, overwrite=keyed_by_connection)
        return True

    return Reported(event_id, upsert)


async def record_export_result(uow: UnitOfWork, result: ExportResult) -> bool:
    """Apply one export.sent/export.failed once; True when the draft's status changed."""
    return await _apply_one(uow, export_result(result))


async def record_export_delay(
    uow: UnitOfWork,
    event_id: uuid.UUID,
    org_id: str,
    draft_id: uuid.UUID,
    erp_export_id: uuid.UUID,
    waiting: dict[str, object],
) -> bool:
    """Apply one export.delayed once: the push attempt shows that it waits."""
    return await _apply_one(uow, export_delay(event_id, org_id, draft_id, erp_export_id, waiting))


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
    return await _apply_one(
        uow, connector_change(event_id, connector, keyed_by_connection=keyed_by_connection)
    )
