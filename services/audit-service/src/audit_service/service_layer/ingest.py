"""Append a batch of entries to their orgs' chains, once per event id."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from audit_service.domain.entry import AuditEntry, chain, unique_by_event_id
from audit_service.service_layer.ports import UnitOfWork


async def ingest(
    uow_factory: Callable[[], UnitOfWork], entries: Sequence[AuditEntry]
) -> list[AuditEntry]:
    """Insert the entries not yet in the log; returns those that were new.

    The org locks come before the duplicate check, so two ingesters racing on the same
    event see each other's commit, and ids already present are dropped before the chain
    is computed (a redelivery never forks a chain).
    """
    candidates = unique_by_event_id(entries)
    if not candidates:
        return []
    async with uow_factory() as uow:
        await uow.audit_log.lock_orgs(sorted({e.org_id for e in candidates}))
        present = await uow.audit_log.existing_event_ids([e.event_id for e in candidates])
        fresh = [e for e in candidates if e.event_id not in present]
        if fresh:
            heads = await uow.audit_log.chain_heads({e.org_id for e in fresh})
            await uow.audit_log.append(chain(fresh, heads))
        await uow.commit()
    return fresh
