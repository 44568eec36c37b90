"""Ports the use cases need; adapters implement them, unit tests fake them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from draft_api.domain.connector import ErpConnector
from draft_api.domain.idempotency import IdempotencyRecord
from draft_api.domain.model import (
    DraftOrder,
    DraftStatus,
    ExportProgress,
    ExportStatus,
    PushAttempt,
)
from draft_api.domain.org_settings import OrgSettings
from draft_api.domain.records import build
from draft_api.domain.validation import Issue

#: validation issues a list item carries at most (the draft itself has all of them)
ISSUES_IN_SUMMARY = 20


@dataclass(frozen=True)
class DraftSummary:
    """A draft as a list shows it: its header, counts and totals, no lines.

    `totals` is per currency; `total` is their sum (as `DraftOrder.total`).
    `validation_issues` holds the first `ISSUES_IN_SUMMARY`, `issue_count` all.
    """

    id: uuid.UUID
    org_id: str
    customer_id: str
    external_ref: str | None
    status: DraftStatus
    currency: str | None
    line_count: int
    total: Decimal
    totals: dict[str, Decimal]
    issue_count: int
    created_by_user_id: str
    approved_by_user_id: str | None
    approved_at: datetime | None
    created_at: datetime
    updated_at: datetime
    current_export_id: uuid.UUID | None
    version: int
    validation_issues: list[Issue] = field(default_factory=list)
    attempts: list[PushAttempt] = field(default_factory=list)
    last_edited_by_user_id: str | None = None

    @classmethod
    def of(cls, draft: DraftOrder) -> DraftSummary:
        """The summary of a loaded draft (what the SQL of a list computes)."""
        totals: dict[str, Decimal] = {}
        for line in draft.lines:
            totals[line.currency] = totals.get(line.currency, Decimal(0)) + line.total
        return build(
            cls,
            draft,
            line_count=len(draft.lines),
            totals=totals,
            issue_count=len(draft.validation_issues),
            validation_issues=list(draft.validation_issues[:ISSUES_IN_SUMMARY]),
            attempts=list(draft.attempts),
        )


@dataclass(frozen=True)
class DraftQuery:
    """Which of an org's drafts a list shows: a page of those with the status (any:
    None) whose external reference or customer contains `search` (case-insensitive)."""

    limit: int
    offset: int = 0
    status: DraftStatus | None = None
    search: str | None = None


@dataclass(frozen=True)
class PushTarget:
    """What a push decides on, read with the draft's row locked (`lock_for_push`).

    `draft` has its header and lines (the event's snapshot) but, of its attempts, only
    the latest (which numbers the next); `earlier` is the row of the push's
    Idempotency-Key, if it has one and the row exists.
    """

    draft: DraftOrder
    has_active_connector: bool
    earlier: IdempotencyRecord | None = None


class DraftRepository(Protocol):
    #: the drafts added or saved in this unit of work (their events go out at commit)
    seen: list[DraftOrder]

    async def add(self, draft: DraftOrder) -> None:
        """Insert a new draft."""

    async def get(
        self, org_id: str, draft_id: uuid.UUID, *, lock: bool = False
    ) -> DraftOrder | None:
        """The org's draft; `lock` holds its row until the transaction ends."""

    async def lock_for_push(
        self, org_id: str, draft_id: uuid.UUID, *, key: str | None = None
    ) -> PushTarget | None:
        """Lock the org's draft for a push and read what the push decides on, in one
        round trip (None: no such draft). The first call of its unit of work."""

    async def lock_for_outcomes(
        self, targets: Sequence[tuple[str, uuid.UUID, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], ExportProgress]:
        """Lock the drafts export outcomes are for ((org_id, draft_id, erp_export_id)
        each) and read, in one round trip, what the outcomes decide on: each draft's
        status, version and current export and, of its own attempts, only those whose
        export one of the targets names (another draft's export is never its attempt).
        By (org_id, draft_id); a draft the org does not have is absent."""

    def save_progress(self, progress: ExportProgress) -> None:
        """Stage the progress for `write_progress`; as `save`, its version goes up."""

    async def write_progress(self) -> None:
        """Write every staged progress (status, version, changed attempts) in one
        statement. Raises ConcurrentModification when a draft changed since it was read."""

    async def save(self, draft: DraftOrder) -> None:
        """Persist changes (optimistic version check).

        Raises ConcurrentModification when the draft changed since it was read.
        """

    async def page(self, org_id: str, query: DraftQuery) -> tuple[list[DraftSummary], int]:
        """A page of the org's drafts (newest first) as summaries, and how many match.

        Counts and totals are aggregated by the store: lines are never loaded.
        """

    async def external_ref_taken(
        self, org_id: str, external_ref: str, *, exclude: uuid.UUID
    ) -> bool: ...

    async def export_status(self, org_id: str, export_id: uuid.UUID) -> ExportStatus | None: ...


class ConnectorReadModel(Protocol):
    async def has_active(self, org_id: str) -> bool: ...

    async def upsert(self, connector: ErpConnector, *, overwrite: bool = True) -> None:
        """Store the connection's state (in arrival order); with `overwrite=False` only
        when the connection is not known yet. Never changes a known connection's org."""


class OrgSettingsRepository(Protocol):
    async def get(self, org_id: str) -> OrgSettings:
        """The org's settings (the defaults when it never set any)."""

    async def save(self, settings: OrgSettings) -> None: ...


class IdempotencyKeys(Protocol):
    async def get(self, org_id: str, key: str) -> IdempotencyRecord | None: ...

    async def add(self, record: IdempotencyRecord) -> None:
        """Insert; raises IdempotencyKeyInFlight when a concurrent request took the key."""

    async def delete(self, org_id: str, key: str) -> None: ...


class Inbox(Protocol):
    async def claim(self, event_id: uuid.UUID) -> bool:
        """True the first time an event id is seen in this consumer (apply it)."""

    async def claim_many(self, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """`claim` for a batch in one statement: the ids seen for the first time."""


class UnitOfWork(Protocol):
    drafts: DraftRepository
    connectors: ConnectorReadModel
    idempotency_keys: IdempotencyKeys
    inbox: Inbox
    org_settings: OrgSettingsRepository

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, *exc_info: object) -> None:
        """Roll back whatever was not committed."""

    async def commit(self) -> None:
        """Write the events the stored drafts recorded to the outbox, then commit."""

    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class CacheState(StrEnum):
    ACQUIRED = "acquired"  # this request holds the in-flight marker
    IN_FLIGHT = "in_flight"  # another request holds it
    DONE = "done"  # a finished request stored its export id
    UNAVAILABLE = "unavailable"  # cache down: Postgres alone decides


@dataclass(frozen=True)
class CacheEntry:
    state: CacheState
    export_id: uuid.UUID | None = None
    token: str | None = None


class IdempotencyCache(Protocol):
    """Fast path and in-flight lock in front of the Postgres idempotency rows."""

    async def acquire(self, draft_id: uuid.UUID, key: str) -> CacheEntry: ...

    async def remember(self, draft_id: uuid.UUID, key: str, export_id: uuid.UUID) -> None: ...

    async def release(self, draft_id: uuid.UUID, key: str, token: str) -> None: ...
