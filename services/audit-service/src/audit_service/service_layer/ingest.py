"""Append a batch of entries to their orgs' chains, once per event id."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from audit_service.domain.entry import AuditEntry, chain, unique_by_event_id
from audit_service.service_layer.ports import Appender


async def ingest(
    appender_factory: Callable[[], Appender], entries: Sequence[AuditEntry]
) -> list[AuditEntry]:
    """Insert the entries not yet in the log; returns those that were new.

    One transaction for the whole batch: the org locks come before the look at what is
    stored (so two ingesters racing on the same event see each other's commit), ids
    already present are dropped before the chain is computed (a redelivery never forks
    a chain), and the chain is computed in one pass, onto each org's head.
    """
    candidates = unique_by_event_id(entries)
    if not candidates:
        return []
    orgs = sorted({e.org_id for e in candidates})
    async with appender_factory() as batch:
        present, heads = await batch.lock_and_read(orgs, [e.event_id for e in candidates])
        fresh = [e for e in candidates if e.event_id not in present]
        await batch.append(chain(fresh, heads))
        await batch.commit()
    return fresh
