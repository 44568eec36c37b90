"""Each event maps to exactly one entry with the contract's action; poison to UNREADABLE."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from audit_service.adapters.mapping import (
    UNKNOWN_ORG,
    RawRecord,
    entry_from_dead_letter,
    entry_from_envelope,
    json_data,
    unreadable_event_id,
)
from orderflow_shared.contracts.events import UNREADABLE_AUDIT_ACTION


def test_every_event_type_maps_to_its_audit_action(samples):
    envelopes = samples.flow("org-a")
    actions = [entry_from_envelope(e).action for e in envelopes]
    assert actions == samples.EXPECTED_ACTIONS


def test_an_entry_carries_the_events_id_org_actor_subject_time_and_data(samples):
    envelope = samples.flow("org-a", actor="approver-7")[2]
    entry = entry_from_envelope(envelope)
    assert entry.event_id == envelope.id
    assert entry.org_id == "org-a"
    assert entry.actor_user_id == "approver-7"
    assert entry.entity_type == "draft_order"
    assert entry.entity_id == envelope.subject
    assert entry.occurred_at == envelope.time
    assert entry.source_topic == "draft.approved"
    assert entry.data["approved_by_user_id"] == "approver-1"


def test_a_connection_change_is_about_the_connection(samples):
    envelope = samples.flow("org-a")[-1]
    entry = entry_from_envelope(envelope)
    assert entry.entity_type == "erp_connection"
    assert entry.entity_id == envelope.subject


def test_a_naive_event_time_is_read_as_utc(samples):
    envelope = samples.flow("org-a")[0]
    naive = type(envelope)(**{**envelope.__dict__, "time": datetime(2025, 1, 1, 12, 0)})
    assert entry_from_envelope(naive).occurred_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _dead_letter(offset: int = 7, consumer: str = "export-service", **extra: bytes) -> RawRecord:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_type", b"orderflow.draft.exploded.v9"),
        ("orgid", b"org-a"),
        ("actorid", b"user-9"),
        ("dlt_reason", b"unknown event type"),
        ("dlt_topic", b"draft.created"),
        ("dlt_partition", b"3"),
        ("dlt_offset", str(offset).encode()),
        ("dlt_consumer", consumer.encode()),
    ]
    headers += list(extra.items())
    return RawRecord(
        topic="dead_letter", partition=0, offset=99, timestamp_ms=1_766_831_400_000, headers=headers
    )


def test_a_dead_letter_becomes_an_unreadable_event_with_the_dlt_headers_as_data():
    entry = entry_from_dead_letter(_dead_letter())
    assert entry.action == UNREADABLE_AUDIT_ACTION
    assert entry.org_id == "org-a"
    assert entry.actor_user_id == "user-9"
    assert entry.entity_id == "draft.created/3/7"
    assert entry.source_topic == "dead_letter"
    assert entry.data["dlt_reason"] == "unknown event type"
    assert entry.data["dlt_consumer"] == "export-service"
    assert entry.data["original_headers"]["ce_type"] == "orderflow.draft.exploded.v9"
    assert entry.event_id == unreadable_event_id("draft.created", 3, 7)


def test_copies_of_one_poison_record_from_several_consumers_share_one_event_id():
    first = entry_from_dead_letter(_dead_letter(consumer="export-service"))
    second = entry_from_dead_letter(_dead_letter(consumer="draft-api"))
    other = entry_from_dead_letter(_dead_letter(offset=8))
    assert first.event_id == second.event_id
    assert first.event_id != other.event_id


def test_a_dead_letter_without_dlt_headers_or_org_is_still_audited():
    record = RawRecord(
        topic="dead_letter", partition=1, offset=5, timestamp_ms=0, headers=[("x", b"\xff")]
    )
    entry = entry_from_dead_letter(record)
    assert entry.org_id == UNKNOWN_ORG
    assert entry.entity_id == "dead_letter/1/5"
    assert isinstance(entry.event_id, uuid.UUID)


def test_nul_characters_and_nan_are_made_storable(samples):
    envelope = samples.flow("org-a")[0]
    poisoned = type(envelope)(
        **{**envelope.__dict__, "data": envelope.data[:-1] + b',"note":"a\\u0000b","x":NaN}'}
    )
    entry = entry_from_envelope(poisoned)
    assert entry.data["note"] == "a\ufffdb"
    assert entry.data["x"] == "nan"
    entry.canonical()  # serializable without NaN


def test_nul_characters_in_headers_are_made_storable(samples):
    envelope = samples.flow("org-a")[0]
    odd = type(envelope)(
        **{**envelope.__dict__, "subject": "d\x001", "org_id": "o\x00", "actor_id": "u\x00"}
    )
    entry = entry_from_envelope(odd)
    assert (entry.entity_id, entry.org_id, entry.actor_user_id) == (
        "d\ufffd1",
        "o\ufffd",
        "u\ufffd",
    )


def test_event_times_at_the_edge_of_the_calendar_still_map(samples):
    envelope = samples.flow("org-a")[0]
    early = datetime.fromisoformat("0001-01-01T00:00:00+14:00")
    late = datetime.fromisoformat("9999-12-31T23:59:59-14:00")
    for moment, year in ((early, 1), (late, 9999)):
        edge = type(envelope)(**{**envelope.__dict__, "time": moment})
        entry = entry_from_envelope(edge)
        assert entry.occurred_at.year == year
        assert entry.occurred_at.tzinfo == UTC
        entry.canonical()


def test_a_dead_letter_with_an_absurd_timestamp_gets_the_epoch():
    record = RawRecord(topic="dead_letter", partition=0, offset=1, timestamp_ms=2**62, headers=[])
    assert entry_from_dead_letter(record).occurred_at == datetime(1970, 1, 1, tzinfo=UTC)


def test_data_read_once_is_what_the_walk_over_it_would_make():
    raw = b'{"big":1e999,"neg":-Infinity,"n":NaN,"ok":[1.5,"x",{"k":"a\\u0000"}],"s":"\\\\u0000"}'
    assert json_data(raw) == {
        "big": "inf",
        "neg": "-inf",
        "n": "nan",
        "ok": [1.5, "x", {"k": "a\ufffd"}],
        "s": "\\u0000",  # an escaped backslash, not a NUL: kept as written
    }
    assert json_data('{"utf16":"ü\\u0000"}'.encode("utf-16")) == {"utf16": "ü\ufffd"}
