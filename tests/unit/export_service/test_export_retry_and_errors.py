import random
from datetime import UTC, datetime, timedelta

import pytest
from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.retry import RetryPolicy


def test_backoff_grows_exponentially_and_is_capped():
    policy = RetryPolicy(base_seconds=1, max_seconds=30)
    assert [policy.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.ceiling(10_000) == 30


def test_jittered_delay_stays_between_half_and_full_ceiling():
    policy = RetryPolicy(base_seconds=2, max_seconds=60)
    rng = random.Random(7)
    delays = {policy.delay(3, rng) for _ in range(200)}
    assert min(delays) >= timedelta(seconds=4)
    assert max(delays) <= timedelta(seconds=8)
    assert len(delays) > 100  # jitter spreads retries of many exports apart


def test_the_next_attempt_never_lies_past_the_deadline():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    policy = RetryPolicy(base_seconds=10, max_seconds=300, deadline=timedelta(hours=24))
    assert policy.deliver_by(now) == now + timedelta(hours=24)
    deliver_by = now + timedelta(seconds=3)
    assert policy.next_attempt(5, now, deliver_by, random.Random(1)) == deliver_by
    assert policy.next_attempt(5, deliver_by, deliver_by) is None
    later = policy.next_attempt(1, now, now + timedelta(hours=1), random.Random(1))
    assert now + timedelta(seconds=5) <= later <= now + timedelta(seconds=10)


def test_the_default_budget_is_a_day_with_a_five_minute_cap():
    policy = RetryPolicy()
    assert policy.deadline == timedelta(hours=24) and policy.max_seconds == 300


@pytest.mark.parametrize(
    "kwargs",
    [
        {"deadline": timedelta(0)},
        {"base_seconds": 0},
        {"base_seconds": 5, "max_seconds": 1},
    ],
)
def test_nonsense_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.CONNECTION_REFUSED,
        ErrorCode.CONNECTION_TIMEOUT,
        ErrorCode.CONNECTION_LOST,
        ErrorCode.REMOTE_IO_ERROR,
    ],
)
def test_network_trouble_is_transient(code):
    assert DeliveryError(code, "x").is_transient


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.AUTH_FAILED,
        ErrorCode.HOST_KEY_MISMATCH,
        ErrorCode.REMOTE_DIR_MISSING,
        ErrorCode.NO_ACTIVE_CONNECTION,
        ErrorCode.INVALID_CONFIGURATION,
    ],
)
def test_configuration_trouble_is_permanent(code):
    assert not DeliveryError(code, "x").is_transient


def test_error_json_names_code_and_message():
    error = DeliveryError(ErrorCode.AUTH_FAILED, "server refused the key")
    assert error.as_json() == {
        "error": "server refused the key",
        "code": "auth_failed",
        "transient": False,
    }
