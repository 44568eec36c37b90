"""Domain events the DraftOrder aggregate records; adapters publish them via the outbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from draft_api.domain.lines import DraftLine
from draft_api.domain.validation import Issue


@dataclass(frozen=True)
class DomainEvent:
    draft_id: uuid.UUID
    org_id: str
    actor_id: str | None


@dataclass(frozen=True)
class DraftCreated(DomainEvent):
    customer_id: str
    external_ref: str | None
    line_count: int
    created_at: datetime


@dataclass(frozen=True)
class DraftValidated(DomainEvent):
    status: str
    issues: tuple[Issue, ...]
    validated_at: datetime


@dataclass(frozen=True)
class DraftApproved(DomainEvent):
    approved_by_user_id: str
    approved_at: datetime


@dataclass(frozen=True)
class LineSnapshot(DraftLine):
    line_total: Decimal


@dataclass(frozen=True)
class OrderSnapshot:
    draft_id: uuid.UUID
    org_id: str
    customer_id: str
    external_ref: str | None
    currency: str
    total: Decimal
    approved_by_user_id: str | None
    approved_at: datetime | None
    created_at: datetime
    lines: tuple[LineSnapshot, ...]


@dataclass(frozen=True)
class PushRequested(DomainEvent):
    erp_export_id: uuid.UUID
    attempt: int
    is_retry: bool
    requested_at: datetime
    order: OrderSnapshot
