"""SIGKILL the audit-service in the middle of a burst of 1,000 events, restart it:
exactly 1,000 entries, and the chain verifies. Two replicas at once keep chains whole."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import uuid
from datetime import timedelta

from orderflow_shared.contracts.events import DraftCreatedV1
from orderflow_shared.messaging.envelope import Envelope

from .conftest import AuditProcess, produce, wait_for

BURST = 1000
CHUNK = 50


def _burst(org: str | list[str], t0, count: int = BURST) -> list[Envelope]:  # type: ignore[no-untyped-def]
    orgs = [org] if isinstance(org, str) else org
    envelopes = []
    for n in range(count):
        draft_id = uuid.uuid4()
        data = DraftCreatedV1(draft_id=draft_id, customer_id=f"C-{n}", line_count=1, created_at=t0)
        envelopes.append(
            Envelope.wrap(
                data,
                source="/orderflow/draft-api",  # the producer of draft.* (else UNTRUSTED_EVENT)
                subject=str(draft_id),
                org_id=orgs[n % len(orgs)],
                actor_id="user-1",
                time=t0 + timedelta(milliseconds=n),
            )
        )
    return envelopes


def test_sigkill_during_a_burst_loses_nothing_and_duplicates_nothing(audit_db, samples, tmp_path):
    org = f"org-burst-{uuid.uuid4().hex[:8]}"
    envelopes = _burst(org, samples.T0)
    service = AuditProcess(
        audit_db, f"audit-service-it-{uuid.uuid4().hex[:10]}", tmp_path / "a.log"
    )
    service.start()
    try:
        chunks = [envelopes[i : i + CHUNK] for i in range(0, BURST, CHUNK)]
        half = len(chunks) // 2
        first_half = threading.Thread(
            target=lambda: [produce(audit_db.servers.kafka, chunk) for chunk in chunks[:half]]
        )
        first_half.start()
        wait_for(lambda: audit_db.count(org) > 0, "the first entries")
        service.kill()  # while the first half is being produced and ingested
        at_kill = audit_db.count(org)
        first_half.join(timeout=120)
        assert not first_half.is_alive()
        for chunk in chunks[half:]:  # the rest of the burst arrives while it is down
            produce(audit_db.servers.kafka, chunk)
        assert 0 < at_kill <= BURST // 2
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


def test_two_replicas_ingesting_at_once_keep_every_chain_whole(audit_db, samples, tmp_path):
    orgs = [f"org-pair-{uuid.uuid4().hex[:8]}" for _ in range(10)]
    envelopes = _burst(orgs, samples.T0, count=2000)
    group = f"audit-service-it-{uuid.uuid4().hex[:10]}"
    replicas = [AuditProcess(audit_db, group, tmp_path / f"r{n}.log") for n in range(2)]
    for replica in replicas:
        replica.start()
    try:
        # both must own some draft.created partitions before the burst starts
        wait_for(lambda: _split(replicas), "the group to settle on two members")
        produce(audit_db.servers.kafka, envelopes)
        wait_for(lambda: sum(audit_db.count(o) for o in orgs) >= 2000, "2,000 entries", 180)
        appended = [_appended(replica) for replica in replicas]
    finally:
        for replica in replicas:
            replica.stop()
    assert all(n > 0 for n in appended), appended  # both replicas wrote, concurrently
    assert sum(audit_db.count(o) for o in orgs) == 2000
    for org in orgs:
        verified = subprocess.run(
            [sys.executable, "-m", "audit_service", "verify", "--org", org],
            env={"DATABASE_URL": audit_db.runtime_url, "ORDERFLOW_ENV": "test"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert verified.returncode == 0, verified.stdout


def _appended(replica: AuditProcess) -> float:
    body = replica.metrics()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("orderflow_audit_entries_appended_total{")
    )


_PARTITION = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")


def _latest_assignment(replica: AuditProcess) -> set[tuple[str, str]]:
    lines = [
        line
        for line in replica.log_path.read_text(errors="replace").splitlines()
        if "partitions assigned" in line
    ]
    return set(_PARTITION.findall(lines[-1])) if lines else set()


def _split(replicas: list[AuditProcess]) -> bool:
    """Each replica owns some draft.created partitions, and none owns another's."""
    first, second = (_latest_assignment(r) for r in replicas)
    owns_some = all(any(t == "draft.created" for t, _ in a) for a in (first, second))
    return owns_some and not first & second
