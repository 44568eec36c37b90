import uuid
from datetime import timedelta

import pytest
from export_service.domain.connection import ConnectorType, LocalSettings, Secrets, SftpSettings
from export_service.domain.errors import ConnectionNotFound, DeliveryError, ErrorCode
from export_service.domain.export import ExportStatus
from export_service.domain.renderers import FileFormat
from export_service.domain.retry import RetryPolicy
from export_service.service_layer import connections as uc
from export_service.service_layer.exports import (
    PushRequest,
    claim_exports,
    deliver,
    record_push_requests,
)

ADMIN = uc.Actor(org_id="org-a", user_id="admin-1")
OTHER_ORG = uc.Actor(org_id="org-b", user_id="admin-2")
LEASE = timedelta(seconds=30)
FINGERPRINT = "SHA256:" + "A" * 43


def sftp_command(active: bool = True, name: str = "ERP") -> uc.CreateConnection:
    return uc.CreateConnection(
        name=name,
        connector_type=ConnectorType.SFTP,
        is_active=active,
        file_format=FileFormat.CSV,
        file_name_template="{external_ref}_{export_id}",
        sftp=SftpSettings("127.0.0.1", 2222, "erp", "/inbox", FINGERPRINT),
        local=None,
        secrets=Secrets(private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nx"),
    )


async def test_creating_an_active_connection_deactivates_the_orgs_other_one(uow, clock):
    first = await uc.create_connection(uow, ADMIN, sftp_command(name="one"), clock)
    second = await uc.create_connection(uow, ADMIN, sftp_command(name="two"), clock)
    listed = {c.name: c.is_active for c in await uc.list_connections(uow, ADMIN)}
    assert listed == {"one": False, "two": True}
    changes = [(m.subject, m.data.change) for m in uow.outbox]
    assert changes == [
        (str(first.id), "created"),
        (str(first.id), "activated"),
        (str(first.id), "deactivated"),
        (str(second.id), "created"),
        (str(second.id), "activated"),
    ]
    assert all(m.key == m.subject for m in uow.outbox)  # keyed by connection (compaction)


async def test_connection_events_carry_no_secrets(uow, clock):
    await uc.create_connection(uow, ADMIN, sftp_command(), clock)
    payload = uow.outbox[0].data.model_dump_json()
    assert "PRIVATE KEY" not in payload and "private_key" not in payload


async def test_another_orgs_connection_is_not_found(uow, clock):
    connection = await uc.create_connection(uow, ADMIN, sftp_command(), clock)
    with pytest.raises(ConnectionNotFound):
        await uc.get_connection(uow, OTHER_ORG, connection.id)
    with pytest.raises(ConnectionNotFound):
        await uc.set_active(uow, OTHER_ORG, connection.id, False, clock)


async def test_update_keeps_secrets_that_are_not_given(uow, clock):
    connection = await uc.create_connection(uow, ADMIN, sftp_command(), clock)
    updated = await uc.update_connection(
        uow, ADMIN, connection.id, uc.UpdateConnection(name="renamed", secrets=Secrets()), clock
    )
    assert updated.name == "renamed"
    assert updated.secrets.private_key == connection.secrets.private_key


async def test_deactivate_then_activate(uow, clock):
    connection = await uc.create_connection(uow, ADMIN, sftp_command(), clock)
    assert not (await uc.set_active(uow, ADMIN, connection.id, False, clock)).is_active
    assert (await uc.set_active(uow, ADMIN, connection.id, True, clock)).is_active


class AnyDirectory:
    """A policy that lets every directory through (the transports here are fakes)."""

    def refusal(self, org_id, directory):
        return None


ANY_DIRECTORY = AnyDirectory()


async def local_connection(uow, clock, template="{external_ref}_{export_id}"):
    command = uc.CreateConnection(
        name="local",
        connector_type=ConnectorType.LOCAL,
        is_active=True,
        file_format=FileFormat.JSON,
        file_name_template=template,
        sftp=None,
        local=LocalSettings("/tmp/dropzone"),
        secrets=Secrets(),
    )
    return await uc.create_connection(uow, ADMIN, command, clock, local_policy=ANY_DIRECTORY)


def push(make_push, org="org-a"):
    data = make_push(org_id=org)
    return PushRequest(event_id=uuid.uuid4(), org_id=org, data=data)


async def test_a_push_request_is_recorded_once_even_when_redelivered(uow, clock, make_push):
    await local_connection(uow, clock)
    request = push(make_push)
    assert await record_push_requests(uow, [request, request], clock) == 1
    assert await record_push_requests(uow, [request], clock) == 0
    (export,) = uow.committed_exports.values()
    assert export.status is ExportStatus.PENDING
    assert export.file_name == f"PO-4711_{request.data.erp_export_id}.json"


async def test_a_push_without_active_connection_fails_at_once(uow, clock, make_push):
    request = push(make_push)
    assert await record_push_requests(uow, [request], clock) == 0
    export = uow.committed_exports[request.data.erp_export_id]
    assert export.status is ExportStatus.FAILED
    assert uow.outbox[-1].data.error_code == "no_active_connection"
    assert uow.outbox[-1].data.permanent


async def deliver_all(uow, clock, transport, store, policy=None, owner="w1"):
    jobs = (await claim_exports(uow, owner=owner, lease=LEASE, limit=10, clock=clock)).jobs
    return [
        await deliver(
            job,
            owner=owner,
            uow=uow,
            transports={ConnectorType.LOCAL: transport},
            store=store,
            policy=policy or RetryPolicy(),
            clock=clock,
        )
        for job in jobs
    ]


async def test_a_due_export_is_delivered_stored_and_announced(
    uow, clock, make_push, transport, store
):
    await local_connection(uow, clock)
    request = push(make_push)
    await record_push_requests(uow, [request], clock)
    (outcome,) = await deliver_all(uow, clock, transport, store)
    assert outcome.status is ExportStatus.SENT
    export = uow.committed_exports[request.data.erp_export_id]
    assert export.export_storage_key in store.items
    assert transport.files[export.remote_path] == store.items[export.export_storage_key]
    sent = uow.outbox[-1].data
    assert sent.erp_export_id == export.id and sent.size_bytes == export.size_bytes
    assert not transport.uploads[0].check_existing


async def test_claimed_exports_are_not_claimed_twice_until_the_lease_ends(uow, clock, make_push):
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push)], clock)
    assert len((await claim_exports(uow, owner="w1", lease=LEASE, limit=5, clock=clock)).jobs) == 1
    assert (await claim_exports(uow, owner="w2", lease=LEASE, limit=5, clock=clock)).jobs == []
    clock.advance(31)
    (job,) = (await claim_exports(uow, owner="w2", lease=LEASE, limit=5, clock=clock)).jobs
    assert job.export.may_already_be_delivered


async def test_a_claim_that_fills_its_slots_wakes_the_other_workers(uow, clock, make_push):
    """Claims try the claim lock instead of waiting for it: a worker that finds it taken
    takes nothing, and the holder, when it takes all it can, wakes the others (more may
    be due); a claim that takes less reads when work falls due next instead."""
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push) for _ in range(3)], clock)
    uow.claim_lock_taken = True
    contended = await claim_exports(uow, owner="w2", lease=LEASE, limit=5, clock=clock)
    assert contended.contended and contended.jobs == []
    assert {e.status for e in uow.committed_exports.values()} == {ExportStatus.PENDING}
    uow.claim_lock_taken = False
    full = await claim_exports(uow, owner="w1", lease=LEASE, limit=2, clock=clock)
    assert len(full.jobs) == 2 and not full.contended
    assert uow.announcements == 1 and full.next_due is None
    rest = await claim_exports(uow, owner="w2", lease=LEASE, limit=5, clock=clock)
    assert len(rest.jobs) == 1 and uow.announcements == 1
    assert rest.next_due == clock() + LEASE  # the leases just taken end first


async def test_a_worker_that_lost_its_lease_records_nothing(
    uow, clock, make_push, transport, store
):
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push)], clock)
    (stale,) = (await claim_exports(uow, owner="w1", lease=LEASE, limit=5, clock=clock)).jobs
    clock.advance(31)
    await claim_exports(uow, owner="w2", lease=LEASE, limit=5, clock=clock)
    outcome = await deliver(
        stale,
        owner="w1",
        uow=uow,
        transports={ConnectorType.LOCAL: transport},
        store=store,
        policy=RetryPolicy(),
        clock=clock,
    )
    assert outcome.status is None
    assert uow.event_types().count("ExportSentV1") == 0


async def test_transient_errors_retry_then_fail_at_the_deadline(
    uow, clock, make_push, transport, store
):
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push)], clock, deadline=timedelta(seconds=5))
    policy = RetryPolicy(base_seconds=1, max_seconds=2, deadline=timedelta(seconds=5))
    transport.failures = [DeliveryError(ErrorCode.CONNECTION_REFUSED, "refused")] * 100
    statuses = []
    for _ in range(6):  # attempts at 0, 2 and 4 s; at 6 s the deadline (5 s) has passed
        statuses += [o.status for o in await deliver_all(uow, clock, transport, store, policy)]
        clock.advance(2)
    assert statuses == [ExportStatus.PENDING] * 3
    assert uow.event_types().count("ExportDelayedV1") == 3
    (export,) = uow.committed_exports.values()
    assert export.status is ExportStatus.FAILED and export.error_json["deadline_passed"]
    failed = uow.outbox[-1].data
    assert failed.error_code == "connection_refused" and failed.attempts == 3
    assert not failed.permanent


async def test_a_retry_that_succeeds_before_the_bound_is_sent(
    uow, clock, make_push, transport, store
):
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push)], clock)
    transport.failures = [DeliveryError(ErrorCode.CONNECTION_LOST, "gone")]
    assert [o.status for o in await deliver_all(uow, clock, transport, store)] == [
        ExportStatus.PENDING
    ]
    clock.advance(5)
    assert [o.status for o in await deliver_all(uow, clock, transport, store)] == [
        ExportStatus.SENT
    ]
    assert transport.uploads[-1].check_existing


async def test_a_permanent_error_fails_without_retry(uow, clock, make_push, transport, store):
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push)], clock)
    transport.failures = [DeliveryError(ErrorCode.AUTH_FAILED, "denied")]
    (outcome,) = await deliver_all(uow, clock, transport, store)
    assert outcome.status is ExportStatus.FAILED and outcome.error_code == "auth_failed"


async def test_an_unexpected_crash_costs_an_attempt(uow, clock, make_push, transport, store):
    await local_connection(uow, clock)
    await record_push_requests(uow, [push(make_push)], clock)
    transport.failures = [RuntimeError("bug")]
    (outcome,) = await deliver_all(uow, clock, transport, store)
    assert outcome.status is ExportStatus.PENDING and outcome.error_code == "internal_error"


async def test_a_broken_stored_template_fails_the_export_instead_of_blocking_the_consumer(
    uow, clock, make_push
):
    connection = await local_connection(uow, clock)
    uow.committed_connections[connection.id].file_name_template = "{nope}"
    request = push(make_push)
    assert await record_push_requests(uow, [request], clock) == 0
    export = uow.committed_exports[request.data.erp_export_id]
    assert export.status is ExportStatus.FAILED
    assert export.error_json["code"] == "invalid_configuration"
