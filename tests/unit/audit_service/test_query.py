"""Query rules: page bounds, time range, the opaque cursor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from audit_service.adapters.mapping import entry_from_envelope
from audit_service.domain.query import AuditQuery, InvalidQuery, Position
from audit_service.service_layer.ingest import ingest
from audit_service.service_layer.queries import list_entries


def test_a_cursor_round_trips():
    position = Position(occurred_at=datetime(2025, 12, 27, 10, 30, 0, 123, tzinfo=UTC), id=42)
    assert Position.decode(position.encode()) == position


NAIVE_TIME_CURSOR = "eyJ0IjoiMjAyNS0wMS0wMSIsImkiOjF9"  # {"t":"2025-01-01","i":1}


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "eyJ0IjogMX0", NAIVE_TIME_CURSOR])
def test_a_garbled_cursor_is_an_invalid_query(cursor):
    with pytest.raises(InvalidQuery):
        Position.decode(cursor)


@pytest.mark.parametrize("limit", [0, 501, -1])
def test_limit_is_bounded(limit):
    with pytest.raises(InvalidQuery):
        AuditQuery(org_id="o", limit=limit)


def test_from_after_to_is_a_valid_empty_range():
    # the published spec cannot state "from <= to", so the server takes any pair
    query = AuditQuery(
        org_id="o",
        occurred_from=datetime(2025, 2, 1, tzinfo=UTC),
        occurred_to=datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert query.occurred_from > query.occurred_to


async def test_pages_follow_each_other_without_gaps_or_repeats(samples, uow_factory):
    entries = [entry_from_envelope(e) for e in samples.flow("org-a")]
    await ingest(uow_factory, entries)
    seen = []
    after = None
    while True:
        page = await list_entries(uow_factory, AuditQuery(org_id="org-a", limit=3, after=after))
        seen += [row.entry.event_id for row in page.entries]
        if page.next_cursor is None:
            break
        after = Position.decode(page.next_cursor)
    assert seen == [e.event_id for e in entries]
