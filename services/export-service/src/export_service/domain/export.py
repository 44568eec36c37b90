"""The Export aggregate: one push request on its way to the ERP dropzone.

PENDING --claim--> DELIVERING --delivered--> SENT
                   DELIVERING --transient error, attempts left--> PENDING (later)
                   DELIVERING --permanent error / bound reached--> FAILED
PENDING --no active connection--> FAILED
A DELIVERING export whose lease expired (its worker died) can be claimed again.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from orderflow_shared.contracts import ExportFailedV1, ExportSentV1, OrderSnapshot

from export_service.domain.errors import DeliveryError, ErrorCode
from export_service.domain.events import Message
from export_service.domain.renderers import FileFormat
from export_service.domain.retry import RetryPolicy


class ExportStatus(StrEnum):
    PENDING = "PENDING"
    DELIVERING = "DELIVERING"
    SENT = "SENT"
    FAILED = "FAILED"


class IllegalTransition(Exception):
    pass


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
    events: list[Message] = field(default_factory=list, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        return self.status in (ExportStatus.SENT, ExportStatus.FAILED)

    def is_due(self, now: datetime) -> bool:
        if self.status is ExportStatus.PENDING:
            return self.next_attempt_at is None or self.next_attempt_at <= now
        if self.status is ExportStatus.DELIVERING:
            return self.lease_expires_at is None or self.lease_expires_at <= now
        return False

    def claim(self, owner: str, now: datetime, lease: timedelta) -> None:
        """Start an attempt under a lease held by `owner`."""
        if not self.is_due(now):
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
        self._record(
            ExportSentV1(
                draft_id=self.draft_order_id,
                erp_export_id=self.id,
                export_storage_key=delivery.storage_key,
                remote_path=delivery.remote_path,
                checksum_sha256=delivery.checksum,
                size_bytes=delivery.size_bytes,
                attempts=max(self.attempts, 1),
                sent_at=now,
            )
        )

    def attempt_failed(
        self,
        error: DeliveryError,
        policy: RetryPolicy,
        now: datetime,
        rng: random.Random | None = None,
    ) -> None:
        """Schedule a retry for a transient error with attempts left, else give up."""
        if self.status is not ExportStatus.DELIVERING:
            raise IllegalTransition(f"cannot record a failed attempt of a {self.status} export")
        self.error_json = {**error.as_json(), "attempts": self.attempts}
        if error.is_transient and policy.may_retry(self.attempts):
            self.status = ExportStatus.PENDING
            self.next_attempt_at = now + policy.delay(self.attempts, rng)
            self._release()
            return
        self.fail(error, now)

    def fail(self, error: DeliveryError, now: datetime) -> None:
        if self.is_final:
            raise IllegalTransition(f"export {self.id} is already {self.status}")
        self.status = ExportStatus.FAILED
        self.error_json = {**error.as_json(), "attempts": self.attempts}
        self.next_attempt_at = None
        self._release()
        self._record(
            ExportFailedV1(
                draft_id=self.draft_order_id,
                erp_export_id=self.id,
                error_code=str(error.code),
                error_message=error.message,
                attempts=self.attempts,
                permanent=not error.is_transient,
                failed_at=now,
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

    def _release(self) -> None:
        self.lease_owner = None
        self.lease_expires_at = None

    def _record(self, data: ExportSentV1 | ExportFailedV1) -> None:
        self.events.append(
            Message(
                data=data,
                subject=str(self.draft_order_id),
                key=str(self.draft_order_id),
                org_id=self.org_id,
            )
        )
