"""The ingest against real Kafka and Postgres: one entry per event, redeliveries and
poison records included, and a chain that verifies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import datetime

from audit_service.adapters.mapping import unreadable_event_id
from orderflow_shared.contracts.events import UNREADABLE_AUDIT_ACTION

from .conftest import _produce, produce, produce_raw, wait_for


def _org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


def test_every_event_type_produces_exactly_one_entry(audit_service, audit_db, samples):
    org = _org()
    envelopes = samples.flow(org)
    produce(audit_db.servers.kafka, envelopes)
    wait_for(lambda: audit_db.count(org) >= len(envelopes), "all entries")
    rows = audit_db.rows(
        "SELECT event_id, action, entity_id, actor_user_id, source_topic"
        " FROM audit.audit_log WHERE org_id = %s ORDER BY occurred_at",
        [org],
    )
    assert [r[1] for r in rows] == samples.EXPECTED_ACTIONS
    assert [r[0] for r in rows] == [e.id for e in envelopes]
    assert [r[4] for r in rows] == [e.topic for e in envelopes]
    assert {r[3] for r in rows} == {"user-1"}


def test_the_same_events_delivered_twice_give_one_entry_each(audit_service, audit_db, samples):
    org = _org()
    envelopes = samples.flow(org)
    produce(audit_db.servers.kafka, envelopes)
    produce(audit_db.servers.kafka, envelopes)  # every event a second time
    marker = samples.flow(org)[:1]  # produced last: once it is in, both copies were read
    produce(audit_db.servers.kafka, marker)
    wait_for(
        lambda: audit_db.rows("SELECT 1 FROM audit.audit_log WHERE event_id = %s", [marker[0].id]),
        "the marker event",
    )
    wait_for(lambda: audit_db.count(org) == len(envelopes) + 1, "one entry per event")
    counts = audit_db.rows(
        "SELECT event_id, count(*) FROM audit.audit_log WHERE org_id = %s GROUP BY event_id",
        [org],
    )
    assert len(counts) == len(envelopes) + 1
    assert all(n == 1 for _, n in counts)
    assert _verify(audit_db, org).returncode == 0


def test_an_unreadable_record_is_dead_lettered_and_audited_once(audit_service, audit_db):
    org = _org()
    produce_raw(
        audit_db.servers.kafka,
        "draft.approved",
        b'{"this is": "not an approval"}',
        [
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_type", b"orderflow.draft.approved.v1"),
            ("ce_source", b"tests"),
            ("ce_time", b"2025-12-27T10:30:00+00:00"),
            ("ce_subject", b"d-1"),
            ("orgid", org.encode()),
            ("actorid", b"user-2"),
        ],
    )
    rows = wait_for(
        lambda: audit_db.rows(
            "SELECT event_id, entity_id, actor_user_id, data FROM audit.audit_log"
            " WHERE org_id = %s AND action = %s",
            [org, UNREADABLE_AUDIT_ACTION],
        ),
        "the UNREADABLE_EVENT entry",
    )
    assert len(rows) == 1
    event_id, entity_id, actor, data = rows[0]
    topic, partition, offset = entity_id.rsplit("/", 2)
    assert topic == "draft.approved"
    assert event_id == unreadable_event_id(topic, int(partition), int(offset))
    assert actor == "user-2"
    assert data["dlt_topic"] == "draft.approved"
    assert data["dlt_consumer"] == "audit-service"
    assert "invalid" in data["dlt_reason"]


def test_a_record_without_any_envelope_is_audited_under_its_org(audit_service, audit_db):
    org = _org()
    produce_raw(
        audit_db.servers.kafka, "export.sent", b"\x00\x01 binary", [("orgid", org.encode())]
    )
    wait_for(lambda: audit_db.count(org, UNREADABLE_AUDIT_ACTION) == 1, "the UNREADABLE_EVENT")


def test_lag_per_partition_is_exposed_as_a_metric(audit_service):
    def lag_lines() -> list[str]:
        body = audit_service.metrics()
        return [
            line
            for line in body.splitlines()
            if line.startswith("orderflow_consumer_lag_records{")
            and f'consumer="{audit_service.group}"' in line
        ]

    lines = wait_for(lag_lines, "consumer lag samples")
    assert any('topic="draft.created"' in line and 'partition="0"' in line for line in lines)


def _verify(audit_db, org: str) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": audit_db.runtime_url, "ORDERFLOW_ENV": "test", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "audit_service", "verify", "--org", org],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_deeply_nested_record_does_not_wedge_the_consumer(audit_service, audit_db, samples):
    org = _org()
    headers = [
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_type", b"orderflow.draft.created.v1"),
        ("ce_source", b"tests"),
        ("ce_time", b"2025-12-27T10:30:00+00:00"),
        ("ce_subject", b"d-1"),
        ("orgid", org.encode()),
    ]
    produce_raw(audit_db.servers.kafka, "draft.created", b"[" * 200_000, headers)
    behind = samples.flow(org)[0]  # same key, so the same partition, right after it
    asyncio.run(
        _produce(
            audit_db.servers.kafka,
            [("draft.created", b"poison", behind.data, behind.kafka_headers())],
        )
    )
    wait_for(lambda: audit_db.count(org, UNREADABLE_AUDIT_ACTION) == 1, "the UNREADABLE_EVENT")
    wait_for(lambda: audit_db.count(org, "DRAFT_CREATED") == 1, "the event behind it")


def test_odd_but_readable_headers_are_stored_not_retried_forever(audit_service, audit_db, samples):
    org = "o" * 300  # longer than any column limit would allow
    envelope = samples.flow(org)[0]
    headers = [
        (name, value.replace(b"user-1", b"us\x00er")) for name, value in envelope.kafka_headers()
    ]
    asyncio.run(_produce(audit_db.servers.kafka, [(envelope.topic, b"k", envelope.data, headers)]))
    rows = wait_for(
        lambda: audit_db.rows(
            "SELECT actor_user_id FROM audit.audit_log WHERE event_id = %s", [envelope.id]
        ),
        "the entry",
    )
    assert rows == [("us\ufffder",)]


def test_an_event_at_the_end_of_the_calendar_is_stored_and_readable(
    audit_service, audit_db, samples
):
    org = _org()
    envelope = samples.flow(org)[0]
    late = type(envelope)(
        **{**envelope.__dict__, "time": datetime.fromisoformat("9999-12-31T23:59:59-14:00")}
    )
    produce(audit_db.servers.kafka, [late])
    wait_for(lambda: audit_db.count(org) == 1, "the entry")
    entries = audit_service.get("/audit-log", org=org).json()
    assert entries[0]["created_at"] == "9999-12-31T23:59:59.999999Z"
    report = audit_service.get("/audit-log/verify", org=org, roles=("admin",)).json()
    assert report["ok"] is True
