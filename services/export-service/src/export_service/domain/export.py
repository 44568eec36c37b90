"""The Export aggregate: one push request on its way to the ERP dropzone.

PENDING --claim--> DELIVERING --delivered--> SENT
                   DELIVERING --transient error, before the deadline--> PENDING (later;
                              waiting_for_dropzone, `export.delayed`)
                   DELIVERING --permanent error / deadline passed--> FAILED
PENDING --deadline passed while waiting (e.g. the circuit stayed open)--> FAILED
PENDING --no active connection--> FAILED
A DELIVERING export whose lease expired (its worker died) can be claimed again.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict

from orderflow_shared.contracts import OrderSnapshot
from orderflow_shared.contracts.export_status import ExportStatus as ExportStatus

from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.events import ExportDelayed, ExportEvent, ExportFailed, ExportSent
from export_service.domain.renderers import FileFormat
from export_service.domain.retry import RetryPolicy


class IllegalTransition(Exception):
    pass


#: `error_json["reason"]` of a PENDING export that failed transiently and waits.
WAITING_FOR_DROPZONE = "waiting_for_dropzone"


class _ExportIds(TypedDict):
    org_id: str
    draft_id: uuid.UUID
    erp_export_id: uuid.UUID


@dataclass(frozen=True)
class Delivery:
    """What a successful delivery reports."""

    remote_path: str
    checksum: str
    size_bytes: int
    storage_key: str


@dataclass
class Export:
    id: uuid.UUID
    draft_order_id: uuid.UUID
    org_id: str
    attempt_no: int
    snapshot: OrderSnapshot
    created_at: datetime
    status: ExportStatus = ExportStatus.PENDING
    connection_id: uuid.UUID | None = None
    file_format: FileFormat | None = None
    file_name: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    export_storage_key: str | None = None
    remote_path: str | None = None
    checksum: str | None = None
    size_bytes: int | None = None
    error_json: dict[str, object] | None = None
    sent_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    #: deadline of the retries (None: no deadline, rows recorded before it existed)
    deliver_by: datetime | None = None
    #: opaque W3C trace context of the push request (`traceparent`, ...), kept so the
    #: delivery continues its trace; never interpreted here
    trace_context: dict[str, str] | None = field(default=None, repr=False, compare=False)
    events: list[ExportEvent] = field(default_factory=list, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in (ExportStatus.SENT, ExportStatus.FAILED)

    def is_due(self, now: datetime) -> bool:
        if self.status is ExportStatus.PENDING:
            return self.next_attempt_at is None or self.next_attempt_at <= now
        if self.status is ExportStatus.DELIVERING:
            return self.lease_expires_at is None or self.lease_expires_at <= now
        return False

    @property
    def waiting_for_dropzone(self) -> bool:
        """Failed transiently and waits for its next attempt."""
        return (
            self.status is ExportStatus.PENDING
            and self.error_json is not None
            and self.error_json.get("reason") == WAITING_FOR_DROPZONE
        )

    def is_overdue(self, now: datetime) -> bool:
        """Still waiting when its deadline has passed: it must fail, not be tried."""
        return (
            self.status is ExportStatus.PENDING
            and self.deliver_by is not None
            and self.deliver_by <= now
        )

    def claim(self, owner: str, now: datetime, lease: timedelta, *, probe: bool = False) -> None:
        """Start an attempt under a lease held by `owner`. A probe of an open circuit
        may start before the export's own next attempt time."""
        waiting = probe and self.status is ExportStatus.PENDING
        if not (waiting or self.is_due(now)):
            raise IllegalTransition(f"export {self.id} is {self.status} and not due")
        self.status = ExportStatus.DELIVERING
        self.attempts += 1
        self.lease_owner = owner
        self.lease_expires_at = now + lease

    def holds_lease(self, owner: str) -> bool:
        return self.status is ExportStatus.DELIVERING and self.lease_owner == owner

    @property
    def may_already_be_delivered(self) -> bool:
        """An earlier attempt may have put the file there before dying."""
        return self.attempts > 1

    def mark_sent(self, delivery: Delivery, now: datetime) -> None:
        if self.status is not ExportStatus.DELIVERING:
            raise IllegalTransition(f"cannot mark {self.status} export as sent")
        self.status = ExportStatus.SENT
        self.sent_at = now
        self.remote_path = delivery.remote_path
        self.checksum = delivery.checksum
        self.size_bytes = delivery.size_bytes
        self.export_storage_key = delivery.storage_key
        self.error_json = None
        self._release()
        self.events.append(
            ExportSent(
                export_storage_key=delivery.storage_key,
                remote_path=delivery.remote_path,
                checksum_sha256=delivery.checksum,
                size_bytes=delivery.size_bytes,
                attempts=max(self.attempts, 1),
                sent_at=now,
                **self._ids(),
            )
        )

    def attempt_failed(
        self,
        error: DeliveryError,
        policy: RetryPolicy,
        now: datetime,
        rng: random.Random | None = None,
    ) -> None:
        """Wait and retry after a transient error until the deadline, else give up."""
        if self.status is not ExportStatus.DELIVERING:
            raise IllegalTransition(f"cannot record a failed attempt of a {self.status} export")
        self.error_json = {**error.as_json(), "attempts": self.attempts}
        later = policy.next_attempt(self.attempts, now, self.deliver_by, rng)
        if not error.is_transient or later is None:
            self.fail(error, now, deadline_passed=error.is_transient)
            return
        self.status = ExportStatus.PENDING
        self.next_attempt_at = later
        self.error_json["reason"] = WAITING_FOR_DROPZONE
        self._release()
        self._delayed(str(error.code), error.message, max(self.attempts, 1), later, now)

    def wait_behind_circuit(
        self, last_error_code: str | None, next_probe_at: datetime | None, now: datetime
    ) -> None:
        """The connection's circuit is open, so this export is not tried for now: say
        why it waits (as a failed attempt would), without spending an attempt."""
        if self.status is not ExportStatus.PENDING or self.waiting_for_dropzone:
            raise IllegalTransition(f"export {self.id} is {self.status} or already waiting")
        cause = last_error_code or str(ErrorCode.CONNECTION_REFUSED)
        message = (
            f"the dropzone keeps failing (last: {cause}); its circuit is open and "
            "this export waits for it to recover"
        )
        self.error_json = {
            "error": message,
            "code": cause,
            "transient": True,
            "attempts": self.attempts,
            "reason": WAITING_FOR_DROPZONE,
            "circuit": "open",
        }
        self._delayed(cause, message, self.attempts, next_probe_at or now, now)

    def expire(self, now: datetime) -> None:
        """The deadline passed while the export waited: fail with the last error seen."""
        if not self.is_overdue(now):
            raise IllegalTransition(f"export {self.id} is not overdue")
        last = self.error_json or {}
        try:
            code = ErrorCode(str(last.get("code")))
        except ValueError:
            code = ErrorCode.DEADLINE_PASSED
        message = str(last.get("error") or "no attempt could run before the deadline")
        self.fail(DeliveryError(code, message), now, deadline_passed=True)

    def fail(self, error: DeliveryError, now: datetime, *, deadline_passed: bool = False) -> None:
        if self.is_final:
            raise IllegalTransition(f"export {self.id} is already {self.status}")
        self.status = ExportStatus.FAILED
        self.error_json = {**error.as_json(), "attempts": self.attempts}
        if deadline_passed:
            self.error_json["deadline_passed"] = True
            message = f"delivery deadline passed; last error: {error.message}"
            error = DeliveryError(error.code, message)
        self.next_attempt_at = None
        self._release()
        self.events.append(
            ExportFailed(
                error_code=str(error.code),
                error_message=error.message,
                attempts=self.attempts,
                permanent=not error.is_transient,
                failed_at=now,
                **self._ids(),
            )
        )

    def fail_without_connection(self, now: datetime) -> None:
        self.fail(
            DeliveryError(
                ErrorCode.NO_ACTIVE_CONNECTION,
                f"organisation {self.org_id!r} has no active ERP connection",
            ),
            now,
        )

    def _delayed(
        self, code: str, message: str, attempts: int, next_attempt_at: datetime, now: datetime
    ) -> None:
        """Record that the export waits for its next attempt (`export.delayed`)."""
        self.events.append(
            ExportDelayed(
                connection_id=self.connection_id,
                error_code=code,
                error_message=message,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                deliver_by=self.deliver_by,
                delayed_at=now,
                **self._ids(),
            )
        )

    def _release(self) -> None:
        self.lease_owner = None
        self.lease_expires_at = None

    def _ids(self) -> _ExportIds:
        """What every event of this export names: its org, draft and id."""
        return {"org_id": self.org_id, "draft_id": self.draft_order_id, "erp_export_id": self.id}
