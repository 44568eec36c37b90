"""Apply what other services report: export results and ERP connector changes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from draft_api.domain.connector import ErpConnector
from draft_api.domain.model import ExportProgress
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


@dataclass(frozen=True)
class Target:
    """The draft (of the org) and the attempt an export's outcome is about."""

    org_id: str
    draft_id: uuid.UUID
    erp_export_id: uuid.UUID


#: what one reported event does to the open unit of work, given the progress of the draft
#: it targets (None: it targets none, or the org has no such draft); True when it changed
#: something
Effect = Callable[[UnitOfWork, ExportProgress | None], Awaitable[bool]]


@dataclass(frozen=True)
class Reported:
    """An event another service reported, and its effect (applied once per event id)."""

    event_id: uuid.UUID
    effect: Effect
    #: what the effect reads: locked and read with the batch's other targets first
    target: Target | None = None


async def apply_reported(uow: UnitOfWork, events: Sequence[Reported]) -> list[bool]:
    """Apply a batch of reported events in one transaction, each at most once: one
    inbox statement claims them all, and an id claimed before (a redelivery) or seen
    earlier in the batch changes nothing. One statement then locks the drafts the new
    ones target and reads what their outcomes decide on (`lock_for_outcomes`), the
    effects run in order, and one statement writes what they changed. What each event
    changed, in order."""
    changed: list[bool] = []
    async with uow:
        new = await uow.inbox.claim_many([event.event_id for event in events])
        fresh: list[Reported | None] = []
        for event in events:
            fresh.append(event if event.event_id in new else None)
            new.discard(event.event_id)
        targets = [event.target for event in fresh if event is not None and event.target]
        progress = await uow.drafts.lock_for_outcomes(
            [(t.org_id, t.draft_id, t.erp_export_id) for t in targets]
        )
        for applying in fresh:
            if applying is None:
                changed.append(False)
                continue
            target = applying.target
            of = None if target is None else progress.get((target.org_id, target.draft_id))
            changed.append(await applying.effect(uow, of))
        await uow.drafts.write_progress()
        await uow.commit()
    return changed


async def _apply_one(uow: UnitOfWork, event: Reported) -> bool:
    return (await apply_reported(uow, [event]))[0]


def export_result(result: ExportResult) -> Reported:
    """An export.sent/export.failed: moves the draft's current export on. The draft is
    saved even when nothing changed (its version goes up), as it always was."""

    async def finish(uow: UnitOfWork, progress: ExportProgress | None) -> bool:
        if progress is None:
            return False
        if result.sent:
            changed = progress.export_sent(result.erp_export_id, now=result.at)
        else:
            changed = progress.export_failed(
                result.erp_export_id, error=result.error or {}, now=result.at
            )
        uow.drafts.save_progress(progress)
        return changed

    return Reported(
        result.event_id, finish, Target(result.org_id, result.draft_id, result.erp_export_id)
    )


def export_delay(
    event_id: uuid.UUID,
    org_id: str,
    draft_id: uuid.UUID,
    erp_export_id: uuid.UUID,
    waiting: dict[str, object],
) -> Reported:
    """An export.delayed: the push attempt shows that it waits."""

    async def wait(uow: UnitOfWork, progress: ExportProgress | None) -> bool:
        if progress is None or not progress.export_delayed(erp_export_id, waiting=waiting):
            return False
        uow.drafts.save_progress(progress)
        return True

    return Reported(event_id, wait, Target(org_id, draft_id, erp_export_id))


def connector_change(
    event_id: uuid.UUID, connector: ErpConnector, *, keyed_by_connection: bool = True
) -> Reported:
    """An erp_connection.changed (see `record_connector_change`)."""

    async def upsert(uow: UnitOfWork, _: ExportProgress | None) -> bool:
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
