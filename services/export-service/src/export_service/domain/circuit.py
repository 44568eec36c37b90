"""The delivery circuit of one ERP connection (a circuit breaker held in Postgres).

CLOSED --N consecutive transient failures--> OPEN
OPEN --probe interval passed, one waiting export claimed as the probe--> HALF_OPEN
HALF_OPEN --the probe (or any delivery) succeeds--> CLOSED
HALF_OPEN --the probe fails transiently--> OPEN (the next probe waits longer, capped)
HALF_OPEN --the probe's lease expires (its worker died)--> a new probe is claimed

While the circuit is not closed, the connection's waiting exports are not claimed
(they spend no attempts); only the probe is. A permanent error shows the dropzone
answers (e.g. refused credentials): it closes the circuit like a success, and each
export then fails at once as it would without the circuit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from orderflow_shared.timing import backoff

from export_service.domain.errors import DeliveryError
from export_service.domain.events import CircuitMoved


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int = 5
    probe_interval: timedelta = timedelta(seconds=30)
    max_probe_interval: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if self.probe_interval <= timedelta(0) or self.max_probe_interval < self.probe_interval:
            raise ValueError("need 0 < probe_interval <= max_probe_interval")

    def probe_delay(self, failed_probes: int) -> timedelta:
        """Wait before the next probe: doubles with each failed probe, capped."""
        seconds = backoff(
            failed_probes + 1,
            base=self.probe_interval.total_seconds(),
            cap=self.max_probe_interval.total_seconds(),
            jitter=False,
        )
        return timedelta(seconds=seconds)


@dataclass
class Circuit:
    connection_id: uuid.UUID
    org_id: str
    state: CircuitState
    since: datetime
    consecutive_failures: int = 0
    failed_probes: int = 0
    next_probe_at: datetime | None = None
    probe_export_id: uuid.UUID | None = None
    probe_expires_at: datetime | None = None
    last_error_code: str | None = None
    events: list[CircuitMoved] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def closed(cls, connection_id: uuid.UUID, org_id: str, since: datetime) -> Circuit:
        return cls(connection_id, org_id, CircuitState.CLOSED, since)

    @property
    def is_pristine(self) -> bool:
        """Closed with no failure counted: a success changes nothing."""
        return self.state is CircuitState.CLOSED and self.consecutive_failures == 0

    def probe_due(self, now: datetime) -> bool:
        if self.state is CircuitState.OPEN:
            return self.next_probe_at is None or self.next_probe_at <= now
        if self.state is CircuitState.HALF_OPEN:
            return self.probe_expires_at is None or self.probe_expires_at <= now
        return False

    def start_probe(self, export_id: uuid.UUID, now: datetime, lease: timedelta) -> None:
        """One waiting export goes through as the probe; the others keep waiting."""
        if not self.probe_due(now):
            raise ValueError(f"circuit of {self.connection_id} has no probe due")
        self.probe_export_id = export_id
        self.probe_expires_at = now + lease
        if self.state is CircuitState.OPEN:
            self._move(CircuitState.HALF_OPEN, now)

    def delivered(self, now: datetime) -> None:
        """A delivery succeeded: the dropzone works."""
        self.consecutive_failures = 0
        self.failed_probes = 0
        self.last_error_code = None
        if self.state is not CircuitState.CLOSED:
            self._clear_probe()
            self._move(CircuitState.CLOSED, now)

    def failed(
        self,
        error: DeliveryError,
        now: datetime,
        policy: CircuitPolicy,
        export_id: uuid.UUID | None = None,
    ) -> None:
        """A delivery attempt failed with `error`."""
        if not error.is_transient:
            self.delivered(now)  # the dropzone answered; the export fails on its own
            return
        self.consecutive_failures += 1
        self.last_error_code = str(error.code)
        if self.state is CircuitState.CLOSED:
            if self.consecutive_failures >= policy.failure_threshold:
                self.failed_probes = 0
                self.next_probe_at = now + policy.probe_delay(0)
                self._move(CircuitState.OPEN, now)
            return
        if self.state is CircuitState.HALF_OPEN and export_id == self.probe_export_id:
            self.failed_probes += 1
            self._clear_probe()
            self.next_probe_at = now + policy.probe_delay(self.failed_probes)
            self._move(CircuitState.OPEN, now)
        # OPEN, or a delivery that began before the circuit opened: keep waiting.

    def _clear_probe(self) -> None:
        self.probe_export_id = None
        self.probe_expires_at = None

    def _move(self, state: CircuitState, now: datetime) -> None:
        previous = self.state
        self.state = state
        self.since = now
        if state is CircuitState.CLOSED:
            self.next_probe_at = None
        self.events.append(
            CircuitMoved(
                connection_id=self.connection_id,
                org_id=self.org_id,
                state=state.value,
                previous_state=previous.value,
                consecutive_failures=self.consecutive_failures,
                last_error_code=self.last_error_code,
                next_probe_at=self.next_probe_at if state is CircuitState.OPEN else None,
                since=now,
            )
        )
