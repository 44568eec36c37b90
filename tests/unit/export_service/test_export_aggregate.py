import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from export_service.adapters.event_mapping import MAPPING
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.events import ExportDelayed, ExportFailed, ExportSent
from export_service.domain.export import Delivery, Export, ExportStatus, IllegalTransition
from export_service.domain.retry import RetryPolicy
from orderflow_shared.contracts import ExportDelayedV1, ExportSentV1

to_contract, to_envelope = MAPPING.to_contract, MAPPING.to_envelope

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
DEADLINE = timedelta(seconds=60)
POLICY = RetryPolicy(base_seconds=1, max_seconds=10, deadline=DEADLINE)
DELIVERY = Delivery(
    remote_path="/inbox/a.csv", checksum="a" * 64, size_bytes=10, storage_key="org/a.csv"
)


@pytest.fixture
def export(snapshot):
    return Export(
        id=uuid.uuid4(),
        draft_order_id=snapshot.draft_id,
        org_id="org-a",
        attempt_no=1,
        snapshot=snapshot,
        created_at=NOW,
        next_attempt_at=NOW,
        deliver_by=NOW + DEADLINE,
    )


def test_claiming_starts_an_attempt_under_a_lease(export):
    export.claim("w1", NOW, LEASE)
    assert export.status is ExportStatus.DELIVERING
    assert export.attempts == 1
    assert export.holds_lease("w1") and not export.holds_lease("w2")
    assert not export.is_due(NOW + LEASE - timedelta(seconds=1))


def test_a_dead_workers_export_is_claimed_again_after_its_lease(export):
    export.claim("w1", NOW, LEASE)
    with pytest.raises(IllegalTransition):
        export.claim("w2", NOW + timedelta(seconds=1), LEASE)
    export.claim("w2", NOW + LEASE, LEASE)
    assert export.holds_lease("w2") and export.attempts == 2
    assert export.may_already_be_delivered


def test_delivery_marks_sent_and_records_export_sent(export):
    export.claim("w1", NOW, LEASE)
    export.mark_sent(DELIVERY, NOW)
    assert export.status is ExportStatus.SENT and export.sent_at == NOW
    assert export.lease_owner is None
    (event,) = export.events
    assert isinstance(event, ExportSent)
    assert event.checksum_sha256 == "a" * 64
    assert isinstance(to_contract(event), ExportSentV1)
    envelope = to_envelope(event)
    assert envelope.key == str(export.draft_order_id) == envelope.subject
    assert envelope.actor_id == "system:export-service"


def test_a_transient_error_waits_for_the_dropzone_and_says_so(export):
    export.claim("w1", NOW, LEASE)
    export.attempt_failed(
        DeliveryError(ErrorCode.CONNECTION_REFUSED, "refused"), POLICY, NOW, random.Random(1)
    )
    assert export.status is ExportStatus.PENDING and export.waiting_for_dropzone
    assert NOW + timedelta(seconds=0.5) <= export.next_attempt_at <= NOW + timedelta(seconds=1)
    assert export.error_json["code"] == "connection_refused"
    assert export.error_json["reason"] == "waiting_for_dropzone"
    (event,) = export.events
    assert isinstance(event, ExportDelayed)
    assert event.next_attempt_at == export.next_attempt_at
    assert event.deliver_by == NOW + DEADLINE
    assert event.error_code == "connection_refused" and event.attempts == 1
    published = to_contract(event)
    assert isinstance(published, ExportDelayedV1) and published.reason == "waiting_for_dropzone"
    assert to_envelope(event).key == str(export.draft_order_id)


def _fail_until_final(export, code=ErrorCode.CONNECTION_TIMEOUT):
    """Attempt at every scheduled time, failing each time; the times of the attempts."""
    times = []
    while export.status is ExportStatus.PENDING:
        now = export.next_attempt_at
        if export.is_overdue(now):  # woken at the deadline: the claim step expires it
            export.expire(now)
            break
        times.append(now)
        export.claim("w1", now, LEASE)
        export.attempt_failed(DeliveryError(code, "timeout"), POLICY, now, random.Random(3))
    return times


def test_transient_errors_are_retried_until_the_deadline_not_a_count(export):
    times = _fail_until_final(export)
    assert export.status is ExportStatus.FAILED
    assert len(times) > 6  # more than the old bound of attempts
    assert export.events[-1].failed_at == NOW + DEADLINE  # not before the deadline
    assert times[-1] > NOW + DEADLINE - timedelta(seconds=POLICY.max_seconds)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert max(gaps) <= POLICY.max_seconds  # the backoff is capped
    failed = export.events[-1]
    assert isinstance(failed, ExportFailed) and not failed.permanent
    assert failed.attempts == len(times) and failed.error_code == "connection_timeout"
    assert "deadline" in failed.error_message
    assert export.error_json["deadline_passed"] is True
    delayed = [e for e in export.events if isinstance(e, ExportDelayed)]
    assert len(delayed) == len(times)  # each attempt was followed by a wait


def test_an_export_still_waiting_at_its_deadline_expires_with_its_last_error(export):
    export.claim("w1", NOW, LEASE)
    export.attempt_failed(DeliveryError(ErrorCode.CONNECTION_LOST, "gone"), POLICY, NOW)
    assert not export.is_overdue(NOW + DEADLINE - timedelta(seconds=1))
    assert export.is_overdue(NOW + DEADLINE)
    attempts = export.attempts
    export.expire(NOW + DEADLINE)
    assert export.status is ExportStatus.FAILED and export.attempts == attempts
    failed = export.events[-1]
    assert failed.error_code == "connection_lost" and not failed.permanent


def test_an_export_never_tried_expires_as_deadline_passed(export):
    with pytest.raises(IllegalTransition):
        export.expire(NOW)
    export.expire(NOW + DEADLINE)
    assert export.events[-1].error_code == "deadline_passed"


def test_a_probe_may_claim_a_waiting_export_before_its_next_attempt(export):
    export.claim("w1", NOW, LEASE)
    export.attempt_failed(DeliveryError(ErrorCode.CONNECTION_REFUSED, "x"), POLICY, NOW)
    early = NOW + timedelta(milliseconds=1)
    with pytest.raises(IllegalTransition):
        export.claim("w2", early, LEASE)
    export.claim("w2", early, LEASE, probe=True)
    assert export.holds_lease("w2") and export.attempts == 2


def test_a_permanent_error_fails_at_once(export):
    export.claim("w1", NOW, LEASE)
    export.attempt_failed(DeliveryError(ErrorCode.HOST_KEY_MISMATCH, "changed"), POLICY, NOW)
    assert export.status is ExportStatus.FAILED
    assert export.events[0].permanent
    assert export.events[0].error_code == "host_key_mismatch"


def test_no_active_connection_fails_before_any_attempt(export):
    export.fail_without_connection(NOW)
    assert export.status is ExportStatus.FAILED and export.attempts == 0
    assert export.error_json["code"] == "no_active_connection"


def test_final_exports_do_not_move(export):
    export.claim("w1", NOW, LEASE)
    export.mark_sent(DELIVERY, NOW)
    with pytest.raises(IllegalTransition):
        export.mark_sent(DELIVERY, NOW)
    with pytest.raises(IllegalTransition):
        export.fail(DeliveryError(ErrorCode.AUTH_FAILED, "x"), NOW)
    with pytest.raises(IllegalTransition):
        export.claim("w2", NOW + timedelta(days=1), LEASE)
