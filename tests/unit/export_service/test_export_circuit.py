"""The delivery circuit per connection: the domain rules, and how claims and outcomes
use it (fake clock, in-memory unit of work)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from export_service.adapters.event_mapping import MAPPING
from export_service.domain.circuit import Circuit, CircuitPolicy, CircuitState
from export_service.domain.connection import ConnectorType, ErpConnection, Secrets, SftpSettings
from export_service.domain.errors import DeliveryError, ErrorCode, InvalidConnection
from export_service.domain.export import Delivery, ExportStatus
from export_service.domain.renderers import FileFormat
from export_service.domain.retry import RetryPolicy
from export_service.service_layer.exports import (
    PushRequest,
    claim_exports,
    record_outcomes,
    record_push_requests,
)
from orderflow_shared.contracts import ExportCircuitChangedV1, ExportDelayedV1

to_contract, to_envelope = MAPPING.to_contract, MAPPING.to_envelope

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
POLICY = CircuitPolicy(
    failure_threshold=3,
    probe_interval=timedelta(seconds=10),
    max_probe_interval=timedelta(seconds=25),
)
RETRY = RetryPolicy(base_seconds=1, max_seconds=4, deadline=timedelta(minutes=10))
DOWN = DeliveryError(ErrorCode.CONNECTION_REFUSED, "refused")


def circuit() -> Circuit:
    return Circuit.closed(uuid.uuid4(), "org-a", NOW)


def states(c: Circuit) -> list[tuple[str, str]]:
    return [(e.previous_state, e.state) for e in c.events]


# --- the domain --------------------------------------------------------------------


def test_the_circuit_opens_after_the_threshold_of_consecutive_transient_failures():
    c = circuit()
    c.failed(DOWN, NOW, POLICY)
    c.failed(DOWN, NOW, POLICY)
    assert c.state is CircuitState.CLOSED and c.events == []
    c.failed(DOWN, NOW + timedelta(seconds=1), POLICY)
    assert c.state is CircuitState.OPEN and c.since == NOW + timedelta(seconds=1)
    assert c.next_probe_at == NOW + timedelta(seconds=11)
    (event,) = c.events
    assert event.state == "open" and event.consecutive_failures == 3
    assert event.last_error_code == "connection_refused"
    published = to_contract(event)
    assert isinstance(published, ExportCircuitChangedV1)
    assert published.changed_at == published.since == NOW + timedelta(seconds=1)
    envelope = to_envelope(event)
    assert envelope.key == envelope.subject == str(c.connection_id)


def test_a_success_resets_the_count_of_failures():
    c = circuit()
    for _ in range(2):
        c.failed(DOWN, NOW, POLICY)
    c.delivered(NOW)
    assert c.is_pristine
    for _ in range(2):
        c.failed(DOWN, NOW, POLICY)
    assert c.state is CircuitState.CLOSED


def test_one_probe_at_a_time_and_a_successful_probe_closes_the_circuit():
    c = circuit()
    for _ in range(3):
        c.failed(DOWN, NOW, POLICY)
    assert not c.probe_due(NOW + timedelta(seconds=9))
    with pytest.raises(ValueError):
        c.start_probe(uuid.uuid4(), NOW + timedelta(seconds=9), LEASE)
    probe = uuid.uuid4()
    c.start_probe(probe, NOW + timedelta(seconds=10), LEASE)
    assert c.state is CircuitState.HALF_OPEN and c.probe_export_id == probe
    assert not c.probe_due(NOW + timedelta(seconds=11))  # the probe runs: no second one
    assert c.probe_due(NOW + timedelta(seconds=10) + LEASE)  # its worker died: a new one
    c.delivered(NOW + timedelta(seconds=12))
    assert c.state is CircuitState.CLOSED and c.is_pristine and c.probe_export_id is None
    assert states(c) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_reopens_and_the_next_probe_waits_longer_up_to_the_cap():
    c = circuit()
    for _ in range(3):
        c.failed(DOWN, NOW, POLICY)
    waits = []
    now = NOW
    for _ in range(4):
        now = c.next_probe_at
        probe = uuid.uuid4()
        c.start_probe(probe, now, LEASE)
        c.failed(DOWN, now, POLICY, probe)
        assert c.state is CircuitState.OPEN
        waits.append((c.next_probe_at - now).total_seconds())
    assert waits == [20, 25, 25, 25]


def test_a_failure_of_a_delivery_that_started_before_the_circuit_opened_changes_nothing():
    c = circuit()
    for _ in range(3):
        c.failed(DOWN, NOW, POLICY)
    c.start_probe(uuid.uuid4(), NOW + timedelta(seconds=10), LEASE)
    c.failed(DOWN, NOW + timedelta(seconds=11), POLICY, uuid.uuid4())  # not the probe
    assert c.state is CircuitState.HALF_OPEN


def test_a_permanent_error_shows_the_dropzone_answers_and_closes_the_circuit():
    c = circuit()
    for _ in range(3):
        c.failed(DOWN, NOW, POLICY)
    c.failed(DeliveryError(ErrorCode.AUTH_FAILED, "denied"), NOW, POLICY)
    assert c.state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"probe_interval": timedelta(0)},
        {"probe_interval": timedelta(seconds=10), "max_probe_interval": timedelta(seconds=5)},
    ],
)
def test_nonsense_circuit_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        CircuitPolicy(**kwargs)


# --- claims and outcomes -------------------------------------------------------------


def sftp_connection(org: str) -> ErpConnection:
    return ErpConnection(
        id=uuid.uuid4(),
        org_id=org,
        name=f"dropzone of {org}",
        connector_type=ConnectorType.SFTP,
        is_active=True,
        file_format=FileFormat.CSV,
        file_name_template="{external_ref}_{export_id}",
        sftp=SftpSettings(
            host="sftp.example.com",
            port=22,
            username="erp",
            remote_directory="/inbox",
            host_key_fingerprint="SHA256:" + "A" * 43,
        ),
        local=None,
        secrets=Secrets(password="pw"),
        created_at=NOW,
        updated_at=NOW,
    )


async def add_connection(uow, org: str) -> ErpConnection:
    connection = sftp_connection(org)
    async with uow:
        await uow.connections.add(connection)
        await uow.commit()
    return connection


async def pushes(uow, clock, make_push, org: str, n: int) -> None:
    requests = [
        PushRequest(event_id=uuid.uuid4(), org_id=org, data=make_push(org_id=org)) for _ in range(n)
    ]
    await record_push_requests(uow, requests, clock, deadline=RETRY.deadline)
    clock.advance(0.001)


async def claim(uow, clock, limit=50, per_connection=1000, owner="w1"):
    claimed = await claim_exports(
        uow, owner=owner, lease=LEASE, limit=limit, clock=clock, per_connection=per_connection
    )
    return claimed.jobs


async def fail_all(uow, clock, jobs, owner="w1"):
    return await record_outcomes(
        uow,
        [(job, DOWN) for job in jobs],
        owner=owner,
        policy=RETRY,
        clock=clock,
        circuit_policy=POLICY,
    )


def org_of(uow, jobs):
    return {uow.committed_exports[j.export.id].org_id for j in jobs}


async def test_an_open_circuit_holds_its_exports_without_attempts_and_lets_one_probe_through(
    uow, clock, make_push
):
    a = await add_connection(uow, "org-a")
    await pushes(uow, clock, make_push, "org-a", 5)
    await fail_all(uow, clock, await claim(uow, clock))
    assert uow.committed_circuits[a.id].state is CircuitState.OPEN
    attempts = {e.id: e.attempts for e in uow.committed_exports.values()}
    clock.advance(5)  # the exports' own retries are due, the probe is not
    assert await claim(uow, clock) == []
    assert {e.id: e.attempts for e in uow.committed_exports.values()} == attempts
    clock.advance(5)
    (probe,) = await claim(uow, clock)
    assert uow.committed_circuits[a.id].state is CircuitState.HALF_OPEN
    assert await claim(uow, clock) == []  # one probe at a time
    await record_outcomes(
        uow,
        [(probe, _sent(probe))],
        owner="w1",
        policy=RETRY,
        clock=clock,
        circuit_policy=POLICY,
    )
    assert uow.committed_circuits[a.id].state is CircuitState.CLOSED
    drained = await claim(uow, clock)
    assert len(drained) == 4 and probe.export.id not in {j.export.id for j in drained}
    changes = [m.data.state for m in uow.outbox if isinstance(m.data, ExportCircuitChangedV1)]
    assert changes == ["open", "half_open", "closed"]


async def test_exports_that_arrive_while_the_circuit_is_open_say_once_why_they_wait(
    uow, clock, make_push
):
    a = await add_connection(uow, "org-a")
    await pushes(uow, clock, make_push, "org-a", 5)
    await fail_all(uow, clock, await claim(uow, clock))
    assert uow.committed_circuits[a.id].state is CircuitState.OPEN
    await pushes(uow, clock, make_push, "org-a", 3)  # never tried: the circuit is open
    untried = [e.id for e in uow.committed_exports.values() if e.attempts == 0]
    assert len(untried) == 3
    assert await claim(uow, clock) == []
    assert await claim(uow, clock) == []  # said once, not on every claim
    for export_id in untried:
        export = uow.committed_exports[export_id]
        assert export.status is ExportStatus.PENDING and export.attempts == 0
        assert export.waiting_for_dropzone
        assert export.error_json["code"] == str(ErrorCode.CONNECTION_REFUSED)
    delayed = [m.data for m in uow.outbox if isinstance(m.data, ExportDelayedV1)]
    told = [d for d in delayed if d.erp_export_id in untried]
    assert sorted(d.erp_export_id for d in told) == sorted(untried)
    next_probe = uow.committed_circuits[a.id].next_probe_at
    assert all(d.attempts == 0 and d.next_attempt_at == next_probe for d in told)


async def test_another_orgs_exports_are_claimed_while_one_circuit_is_open(uow, clock, make_push):
    await add_connection(uow, "org-a")
    await add_connection(uow, "org-b")
    await pushes(uow, clock, make_push, "org-a", 20)
    await fail_all(uow, clock, await claim(uow, clock))
    clock.advance(5)
    await pushes(uow, clock, make_push, "org-b", 3)
    jobs = await claim(uow, clock, limit=3)
    assert len(jobs) == 3 and org_of(uow, jobs) == {"org-b"}


async def test_claims_keep_a_bound_of_deliveries_in_flight_per_connection(uow, clock, make_push):
    await add_connection(uow, "org-a")
    await add_connection(uow, "org-b")
    await pushes(uow, clock, make_push, "org-a", 10)
    await pushes(uow, clock, make_push, "org-b", 2)
    first = await claim(uow, clock, limit=6, per_connection=3)
    assert sorted(uow.committed_exports[j.export.id].org_id for j in first) == [
        "org-a",
        "org-a",
        "org-a",
        "org-b",
        "org-b",
    ]
    assert await claim(uow, clock, per_connection=3, owner="w2") == []  # a's slots are taken


async def test_exports_held_by_an_open_circuit_fail_at_their_deadline_without_attempts(
    uow, clock, make_push
):
    await add_connection(uow, "org-a")
    await pushes(uow, clock, make_push, "org-a", 4)
    jobs = await claim(uow, clock, limit=3)  # one export is never tried
    await fail_all(uow, clock, jobs)
    clock.advance(RETRY.deadline.total_seconds())
    assert await claim(uow, clock) == []
    exports = list(uow.committed_exports.values())
    assert {e.status for e in exports} == {ExportStatus.FAILED}
    assert sorted(e.attempts for e in exports) == [0, 1, 1, 1]
    failed = [m.data for m in uow.outbox if type(m.data).__name__ == "ExportFailedV1"]
    assert len(failed) == 4 and not any(f.permanent and f.attempts for f in failed)
    assert {f.error_code for f in failed} == {"connection_refused", "deadline_passed"}


async def test_a_success_on_a_healthy_connection_writes_no_circuit(uow, clock, make_push):
    await add_connection(uow, "org-a")
    await pushes(uow, clock, make_push, "org-a", 3)
    jobs = await claim(uow, clock)
    await record_outcomes(
        uow,
        [(job, _sent(job)) for job in jobs],
        owner="w1",
        policy=RETRY,
        clock=clock,
        circuit_policy=POLICY,
    )
    assert uow.committed_circuits == {}


def _sent(job):
    return Delivery(
        remote_path=f"/inbox/{job.export.file_name}",
        checksum="0" * 64,
        size_bytes=1,
        storage_key=f"k/{job.export.id}",
    )


async def test_a_connection_may_set_its_own_delivery_deadline(uow, clock, make_push):
    default = await add_connection(uow, "org-a")
    patient = sftp_connection("org-b")
    patient.delivery_deadline_seconds = 3 * 24 * 3600  # a dropzone with long maintenance
    async with uow:
        await uow.connections.add(patient)
        await uow.commit()
    await pushes(uow, clock, make_push, "org-a", 1)
    await pushes(uow, clock, make_push, "org-b", 1)
    by_connection = {e.connection_id: e for e in uow.committed_exports.values()}
    first, second = by_connection[default.id], by_connection[patient.id]
    assert first.deliver_by - first.created_at == RETRY.deadline
    assert second.deliver_by - second.created_at == timedelta(days=3)


@pytest.mark.parametrize("seconds", [0, -1, 30 * 24 * 3600 + 1])
def test_a_delivery_deadline_outside_one_second_to_30_days_is_refused(seconds):
    connection = sftp_connection("org-a")
    with pytest.raises(InvalidConnection, match="delivery_deadline_seconds"):
        connection.update(now=NOW, actor_id="u", delivery_deadline_seconds=seconds)
