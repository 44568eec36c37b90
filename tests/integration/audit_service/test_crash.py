"""SIGKILL the audit-service in the middle of a burst of 1,000 events, restart it:
exactly 1,000 entries, and the chain verifies."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from datetime import timedelta

from orderflow_shared.contracts.events import DraftCreatedV1
from orderflow_shared.messaging.envelope import Envelope

from .conftest import AuditProcess, produce, wait_for

BURST = 1000
CHUNK = 100


def _burst(org: str, t0) -> list[Envelope]:  # type: ignore[no-untyped-def]
    envelopes = []
    for n in range(BURST):
        draft_id = uuid.uuid4()
        data = DraftCreatedV1(draft_id=draft_id, customer_id=f"C-{n}", line_count=1, created_at=t0)
        envelopes.append(
            Envelope.wrap(
                data,
                source="tests",
                subject=str(draft_id),
                org_id=org,
                actor_id="user-1",
                time=t0 + timedelta(milliseconds=n),
            )
        )
    return envelopes


def test_sigkill_during_a_burst_loses_nothing_and_duplicates_nothing(audit_db, samples, tmp_path):
    org = f"org-burst-{uuid.uuid4().hex[:8]}"
    envelopes = _burst(org, samples.T0)
    service = AuditProcess(audit_db, f"audit-it-{uuid.uuid4().hex[:10]}", tmp_path / "a.log")
    service.start()
    try:
        chunks = [envelopes[i : i + CHUNK] for i in range(0, BURST, CHUNK)]
        producer = threading.Thread(
            target=lambda: [produce(audit_db.servers.kafka, chunk) for chunk in chunks]
        )
        producer.start()
        wait_for(lambda: audit_db.count(org) > 0, "the first entries")
        service.kill()  # while the burst is being produced and ingested
        at_kill = audit_db.count(org)
        producer.join(timeout=120)
        assert not producer.is_alive()
        assert at_kill < BURST
        service.start()
        wait_for(lambda: audit_db.count(org) >= BURST, f"{BURST} entries", deadline=180)
    finally:
        service.stop()
    assert audit_db.count(org) == BURST
    distinct = audit_db.rows(
        "SELECT count(DISTINCT event_id) FROM audit.audit_log WHERE org_id = %s", [org]
    )[0][0]
    assert distinct == BURST
    verified = subprocess.run(
        [sys.executable, "-m", "audit_service", "verify", "--org", org],
        env={"DATABASE_URL": audit_db.runtime_url, "ORDERFLOW_ENV": "test"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f'"entries_checked": {BURST}' in verified.stdout
