import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.export import Delivery, Export, ExportStatus, IllegalTransition
from export_service.domain.retry import RetryPolicy
from orderflow_shared.contracts import ExportFailedV1, ExportSentV1

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
POLICY = RetryPolicy(max_attempts=3, base_seconds=1, max_seconds=10)
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
    (message,) = export.events
    assert isinstance(message.data, ExportSentV1)
    assert message.data.checksum_sha256 == "a" * 64
    assert message.key == str(export.draft_order_id) == message.subject


def test_a_transient_error_schedules_a_retry_without_an_event(export):
    export.claim("w1", NOW, LEASE)
    export.attempt_failed(
        DeliveryError(ErrorCode.CONNECTION_REFUSED, "refused"), POLICY, NOW, random.Random(1)
    )
    assert export.status is ExportStatus.PENDING
    assert NOW + timedelta(seconds=0.5) <= export.next_attempt_at <= NOW + timedelta(seconds=1)
    assert export.error_json["code"] == "connection_refused"
    assert export.events == []


def test_transient_errors_fail_the_export_at_the_bound(export):
    now = NOW
    for _ in range(POLICY.max_attempts):
        assert export.status is ExportStatus.PENDING
        now = max(now, export.next_attempt_at)
        export.claim("w1", now, LEASE)
        export.attempt_failed(DeliveryError(ErrorCode.CONNECTION_TIMEOUT, "timeout"), POLICY, now)
    assert export.status is ExportStatus.FAILED
    (message,) = export.events
    assert isinstance(message.data, ExportFailedV1)
    assert message.data.attempts == 3 and not message.data.permanent
    assert message.data.error_code == "connection_timeout"


def test_a_permanent_error_fails_at_once(export):
    export.claim("w1", NOW, LEASE)
    export.attempt_failed(DeliveryError(ErrorCode.HOST_KEY_MISMATCH, "changed"), POLICY, NOW)
    assert export.status is ExportStatus.FAILED
    assert export.events[0].data.permanent
    assert export.events[0].data.error_code == "host_key_mismatch"


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
