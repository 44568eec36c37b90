"""Records whose claims disagree, produced on the real broker, land in the `_untrusted`
chain and never in an organisation's; the others name their producer and topic."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import uuid

from audit_service.adapters.mapping import UNTRUSTED_ORG
from orderflow_shared.contracts.events import UNTRUSTED_AUDIT_ACTION

from .conftest import _produce, produce, wait_for


def _org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


def _verify(audit_db, org: str) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": audit_db.runtime_url, "ORDERFLOW_ENV": "test", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "audit_service", "verify", "--org", org],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_honest_entries_record_their_producer_and_the_topic_read(audit_service, audit_db, samples):
    org = _org()
    envelopes = samples.flow(org)
    produce(audit_db.servers.kafka, envelopes)
    wait_for(lambda: audit_db.count(org) >= len(envelopes), "all entries")
    rows = audit_db.rows(
        "SELECT event_id, source_topic, producer FROM audit.audit_log WHERE org_id = %s",
        [org],
    )
    expected = {
        (e.id, e.topic, "draft-api" if e.topic.startswith("draft.") else "export-service")
        for e in envelopes
    }
    assert set(rows) == expected
    assert _verify(audit_db, org).returncode == 0


def test_forged_records_are_untrusted_and_outside_both_orgs_chains(
    audit_service, audit_db, samples
):
    victim, attacker = _org(), _org()
    flow = samples.flow(victim)
    pushed = next(e for e in flow if e.topic == "draft.push_requested")
    sent = next(e for e in flow if e.topic == "export.sent")
    # a push request whose envelope names another org than its order
    mismatched = dataclasses.replace(pushed, id=uuid.uuid4(), org_id=attacker)
    # export.sent written where only draft-api writes (draft-api's principal, or a topic
    # an integrator could be granted): its producer is not export-service
    off_topic = dataclasses.replace(sent, id=uuid.uuid4())
    records = [
        (mismatched.topic, mismatched.key.encode(), mismatched.data, mismatched.kafka_headers()),
        ("draft.created", off_topic.key.encode(), off_topic.data, off_topic.kafka_headers()),
    ]
    asyncio.run(_produce(audit_db.servers.kafka, records))
    ids = [mismatched.id, off_topic.id]

    def both_stored() -> list[tuple]:
        stored = audit_db.rows(
            "SELECT event_id, org_id, source_topic, producer, data FROM audit.audit_log"
            " WHERE event_id = ANY(%s)",
            [ids],
        )
        return stored if len(stored) == 2 else []

    found = wait_for(both_stored, "both entries")
    assert {row[1] for row in found} == {UNTRUSTED_ORG}
    by_id = {row[0]: row[2:] for row in found}
    topic, producer, data = by_id[mismatched.id]
    assert (topic, producer) == ("draft.push_requested", "draft-api")
    assert data["envelope_org"] == attacker and data["data_org"] == victim
    topic, producer, data = by_id[off_topic.id]
    assert (topic, producer) == ("draft.created", "draft-api")
    assert any("read from draft.created" in r for r in data["reasons"])
    actions = audit_db.rows(
        "SELECT DISTINCT action FROM audit.audit_log WHERE event_id = ANY(%s)", [ids]
    )
    assert actions == [(UNTRUSTED_AUDIT_ACTION,)]
    assert audit_db.count(attacker) == 0
    assert audit_db.count(victim) == 0
    assert _verify(audit_db, UNTRUSTED_ORG).returncode == 0
