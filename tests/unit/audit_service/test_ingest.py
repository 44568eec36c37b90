"""Ingest: once per event id, redeliveries never fork a chain, orgs locked in order."""

from __future__ import annotations

from audit_service.adapters.mapping import entry_from_envelope
from audit_service.domain.verification import verify_rows
from audit_service.service_layer.ingest import ingest
from audit_service.service_layer.verify import verify_all


async def test_a_batch_is_appended_and_chained(samples, appender_factory, audit_log):
    entries = [entry_from_envelope(e) for e in samples.flow("org-a")]
    added = await ingest(appender_factory, entries)
    assert len(added) == len(entries) == len(audit_log.rows)
    assert verify_rows("org-a", audit_log.rows).ok


async def test_the_same_events_delivered_twice_give_one_entry_each(
    samples, appender_factory, audit_log
):
    entries = [entry_from_envelope(e) for e in samples.flow("org-a")]
    await ingest(appender_factory, entries[:5])
    added = await ingest(appender_factory, entries)  # a redelivery overlapping the first batch
    assert [e.event_id for e in added] == [e.event_id for e in entries[5:]]
    assert len(audit_log.rows) == len(entries)
    assert verify_rows("org-a", audit_log.rows).ok


async def test_duplicates_inside_one_batch_are_stored_once(samples, appender_factory, audit_log):
    entries = [entry_from_envelope(e) for e in samples.flow("org-a")]
    await ingest(appender_factory, entries + entries[:3])
    assert len(audit_log.rows) == len(entries)


async def test_orgs_are_locked_sorted_and_chained_separately(
    samples, appender_factory, uow_factory, audit_log
):
    mixed = [
        entry_from_envelope(e)
        for pair in zip(samples.flow("org-b"), samples.flow("org-a"), strict=True)
        for e in pair
    ]
    await ingest(appender_factory, mixed)
    assert audit_log.locks == [["org-a", "org-b"]]
    reports = await verify_all(uow_factory)
    assert set(reports) == {"org-a", "org-b"}
    assert all(r.ok and r.entries_checked == 8 for r in reports.values())


async def test_an_empty_batch_touches_nothing(appender_factory, audit_log):
    assert await ingest(appender_factory, []) == []
    assert audit_log.locks == []
