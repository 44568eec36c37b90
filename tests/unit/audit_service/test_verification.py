"""The verifier finds the first broken link: altered content, removed or forged rows."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from audit_service.domain.entry import AuditEntry, chain
from audit_service.domain.verification import StoredEntry, verify_rows


def _rows(n: int, org: str = "org-a") -> list[StoredEntry]:
    entries = [
        AuditEntry(
            event_id=uuid.uuid4(),
            org_id=org,
            action="DRAFT_CREATED",
            entity_type="draft_order",
            entity_id=f"d-{i}",
            actor_user_id="u-1",
            occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
            source_topic="draft.created",
            data={"i": i},
        )
        for i in range(n)
    ]
    return [
        StoredEntry(id=i + 1, entry=c.entry, prev_hash=c.prev_hash, hash=c.hash)
        for i, c in enumerate(chain(entries, {}))
    ]


def test_an_intact_chain_verifies():
    report = verify_rows("org-a", _rows(5))
    assert report.ok
    assert report.entries_checked == 5
    assert report.first_broken is None


def test_an_empty_chain_verifies():
    assert verify_rows("org-a", []).ok


def test_altered_content_is_reported_at_the_altered_row():
    rows = _rows(5)
    rows[2] = replace(rows[2], entry=replace(rows[2].entry, data={"i": 99}))
    report = verify_rows("org-a", rows)
    assert not report.ok
    assert report.first_broken is not None
    assert report.first_broken.id == 3
    assert "content" in report.first_broken.reason
    assert report.entries_checked == 3


def test_a_removed_row_is_reported_at_the_row_after_it():
    rows = _rows(5)
    del rows[1]
    report = verify_rows("org-a", rows)
    assert report.first_broken is not None
    assert report.first_broken.id == 3
    assert "prev_hash" in report.first_broken.reason


def test_a_row_rehashed_after_tampering_still_breaks_the_next_link():
    rows = _rows(4)
    forged_entry = replace(rows[1].entry, actor_user_id="mallory")
    forged = chain([forged_entry], {"org-a": rows[0].hash})[0]
    rows[1] = replace(rows[1], entry=forged_entry, hash=forged.hash)
    report = verify_rows("org-a", rows)
    assert report.first_broken is not None
    assert report.first_broken.id == 3
