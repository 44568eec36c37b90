"""Canonical form and the per-org hash chain."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from audit_service.domain.entry import GENESIS_HASH, AuditEntry, chain, link_hash


def _entry(org: str = "org-a", **changes: object) -> AuditEntry:
    base = AuditEntry(
        event_id=uuid.uuid4(),
        org_id=org,
        action="DRAFT_APPROVED",
        entity_type="draft_order",
        entity_id="d-1",
        actor_user_id="u-1",
        occurred_at=datetime(2025, 12, 27, 10, 30, tzinfo=UTC),
        source_topic="draft.approved",
        data={"b": 1, "a": {"y": "é", "x": [1, 2]}},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_canonical_form_is_sorted_compact_utf8_json():
    entry = _entry(event_id=uuid.UUID(int=1))
    text = entry.canonical().decode()
    assert text.startswith('{"action":"DRAFT_APPROVED","actor_user_id":"u-1","data":{"a":')
    assert '"data":{"a":{"x":[1,2],"y":"é"},"b":1}' in text
    assert '"occurred_at":"2025-12-27T10:30:00.000000+00:00"' in text
    assert " " not in text


def test_canonical_form_ignores_key_order_and_time_zone_of_the_same_instant():
    entry = _entry()
    cet = timezone(timedelta(hours=1))
    same = replace(
        entry,
        data={"a": {"x": [1, 2], "y": "é"}, "b": 1},
        occurred_at=datetime(2025, 12, 27, 11, 30, tzinfo=cet),
    )
    assert same.canonical() == entry.canonical()


def test_hash_is_sha256_of_previous_hash_and_canonical_form():
    entry = _entry()
    expected = hashlib.sha256(GENESIS_HASH.encode() + entry.canonical()).hexdigest()
    assert link_hash(GENESIS_HASH, entry) == expected


def test_each_entry_links_to_the_previous_one_of_its_own_org():
    a1, b1, a2 = _entry("org-a"), _entry("org-b"), _entry("org-a")
    linked = chain([a1, b1, a2], heads={})
    assert linked[0].prev_hash == GENESIS_HASH
    assert linked[1].prev_hash == GENESIS_HASH
    assert linked[2].prev_hash == linked[0].hash
    assert linked[2].hash == link_hash(linked[0].hash, a2)


def test_a_new_batch_continues_from_the_stored_head():
    head = "ab" * 32
    linked = chain([_entry("org-a")], heads={"org-a": head})
    assert linked[0].prev_hash == head


def test_any_change_of_content_changes_the_hash():
    entry = _entry()
    original = link_hash(GENESIS_HASH, entry)
    for change in (
        {"action": "DRAFT_PUSHED"},
        {"actor_user_id": "u-2"},
        {"data": {"b": 2, "a": {"y": "é", "x": [1, 2]}}},
        {"occurred_at": entry.occurred_at + timedelta(microseconds=1)},
        {"org_id": "org-b"},
    ):
        assert link_hash(GENESIS_HASH, replace(entry, **change)) != original  # type: ignore[arg-type]
