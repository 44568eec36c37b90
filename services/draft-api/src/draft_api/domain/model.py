"""The DraftOrder aggregate: lines, state machine, approvals and push attempts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from orderflow_shared.contracts.export_status import ExportStatus as ExportStatus

from draft_api.domain import errors
from draft_api.domain.events import (
    DomainEvent,
    DraftApproved,
    DraftCreated,
    DraftValidated,
    LineSnapshot,
    OrderSnapshot,
    PushRequested,
)
from draft_api.domain.lines import DraftLine as DraftLine
from draft_api.domain.lines import NewLine as NewLine
from draft_api.domain.records import build
from draft_api.domain.validation import Issue, find_issues


class DraftStatus(StrEnum):
    NEW = "NEW"
    READY = "READY"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    APPROVED = "APPROVED"
    PUSHING = "PUSHING"
    PUSHED = "PUSHED"
    ERROR = "ERROR"


EDITABLE = frozenset({DraftStatus.NEW, DraftStatus.NEEDS_REVIEW, DraftStatus.READY})


@dataclass
class PushAttempt:
    erp_export_id: uuid.UUID
    attempt: int
    status: ExportStatus
    requested_by_user_id: str
    requested_at: datetime
    finished_at: datetime | None = None
    error: dict[str, object] | None = None


class ExportOutcomes:
    """What an export's outcome does to a draft: its attempt finishes (or shows that it
    waits) and, when it is the push in progress, the draft's status moves on. Shared by
    the whole draft and by `ExportProgress`, the part of it an outcome reads."""

    status: DraftStatus
    current_export_id: uuid.UUID | None
    updated_at: datetime
    attempts: list[PushAttempt]

    def export_sent(self, export_id: uuid.UUID, *, now: datetime) -> bool:
        """Record a delivered export; True when the draft's status changed to PUSHED."""
        return self._finish_export(export_id, ExportStatus.SENT, None, now, DraftStatus.PUSHED)

    def export_failed(
        self, export_id: uuid.UUID, *, error: dict[str, object], now: datetime
    ) -> bool:
        """Record a failed export; True when the draft's status changed to ERROR."""
        return self._finish_export(export_id, ExportStatus.FAILED, error, now, DraftStatus.ERROR)

    def export_delayed(self, export_id: uuid.UUID, *, waiting: dict[str, object]) -> bool:
        """Show why an export in progress waits (its last error, the next attempt);
        the draft stays PUSHING. False when the attempt is finished or unknown (a late
        `export.delayed` never overwrites a result)."""
        attempt = self.attempt_for(export_id)
        if attempt is None or attempt.status is not ExportStatus.PENDING:
            return False
        attempt.error = waiting
        return True

    def attempt_for(self, export_id: uuid.UUID) -> PushAttempt | None:
        return next((a for a in self.attempts if a.erp_export_id == export_id), None)

    def _is_current_push(self, export_id: uuid.UUID) -> bool:
        return self.current_export_id == export_id and self.status is DraftStatus.PUSHING

    def _finish_export(
        self,
        export_id: uuid.UUID,
        status: ExportStatus,
        error: dict[str, object] | None,
        now: datetime,
        then: DraftStatus,
    ) -> bool:
        """Finish the export's attempt; when it is the push in progress, the draft's
        status becomes `then` (True)."""
        attempt = self.attempt_for(export_id)
        if attempt is not None:
            attempt.status = status
            attempt.error = error
            attempt.finished_at = now
        if not self._is_current_push(export_id):
            return False
        self.status = then
        self.updated_at = now
        return True


@dataclass(frozen=True)
class Actor:
    """Who asks: the JWT's subject and organisation."""

    user_id: str
    org_id: str


@dataclass
class DraftOrder(ExportOutcomes):
    id: uuid.UUID
    org_id: str
    customer_id: str
    external_ref: str | None
    status: DraftStatus
    lines: list[DraftLine]
    created_by_user_id: str
    created_at: datetime
    updated_at: datetime
    validation_issues: list[Issue] = field(default_factory=list)
    approved_by_user_id: str | None = None
    approved_at: datetime | None = None
    current_export_id: uuid.UUID | None = None
    attempts: list[PushAttempt] = field(default_factory=list)
    version: int = 0
    #: who changed it last (None: nobody since its creation); the four-eyes rule checks it
    last_edited_by_user_id: str | None = None
    events: list[DomainEvent] = field(default_factory=list, repr=False)

    # -- creation and editing -------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        draft_id: uuid.UUID,
        actor: Actor,
        customer_id: str,
        external_ref: str | None,
        lines: list[NewLine],
        now: datetime,
    ) -> DraftOrder:
        draft = cls(
            id=draft_id,
            org_id=actor.org_id,
            customer_id=customer_id,
            external_ref=external_ref,
            status=DraftStatus.NEW,
            lines=_numbered(lines),
            created_by_user_id=actor.user_id,
            created_at=now,
            updated_at=now,
        )
        draft._record(
            DraftCreated,
            actor,
            customer_id=customer_id,
            external_ref=external_ref,
            line_count=len(draft.lines),
            created_at=now,
        )
        return draft

    @property
    def currency(self) -> str | None:
        return self.lines[0].currency if self.lines else None

    @property
    def total(self) -> Decimal:
        return sum((line.total for line in self.lines), Decimal(0))

    def edit(
        self,
        *,
        now: datetime,
        customer_id: str | None = None,
        external_ref: str | None = None,
        clear_external_ref: bool = False,
        lines: list[NewLine] | None = None,
        edited_by: str | None = None,
    ) -> None:
        """Change header or lines; any change sends the draft back to NEW."""
        if self.status not in EDITABLE:
            raise errors.DraftNotEditable()
        if edited_by is not None:
            self.last_edited_by_user_id = edited_by
        if customer_id is not None:
            self.customer_id = customer_id
        if clear_external_ref:
            self.external_ref = None
        elif external_ref is not None:
            self.external_ref = external_ref
        if lines is not None:
            self.lines = _numbered(lines)
        self.status = DraftStatus.NEW
        self.validation_issues = []
        self.updated_at = now

    # -- state machine ----------------------------------------------------------

    def validate(self, *, actor: Actor, external_ref_taken: bool, now: datetime) -> list[Issue]:
        if self.status not in EDITABLE:
            raise errors.DraftNotValidatable()
        issues = find_issues(
            self.customer_id,
            self.lines,
            external_ref=self.external_ref,
            external_ref_taken=external_ref_taken,
        )
        self.status = DraftStatus.NEEDS_REVIEW if issues else DraftStatus.READY
        self.validation_issues = issues
        self.updated_at = now
        self._record(
            DraftValidated,
            actor,
            status=self.status.value,
            issues=tuple(issues),
            validated_at=now,
        )
        return issues

    def approve(self, *, actor: Actor, now: datetime, four_eyes: bool = False) -> None:
        """READY -> APPROVED; with the org's four-eyes rule on, never by the user who
        created the draft or changed it last."""
        if self.status is not DraftStatus.READY:
            raise errors.DraftNotReady()
        if four_eyes and actor.user_id in self.own_authors():
            raise errors.FourEyesRefused()
        self.status = DraftStatus.APPROVED
        self.approved_by_user_id = actor.user_id
        self.approved_at = now
        self.updated_at = now
        self._record(
            DraftApproved,
            actor,
            approved_by_user_id=actor.user_id,
            approved_at=now,
        )

    def push(
        self, *, actor: Actor, export_id: uuid.UUID, has_active_connector: bool, now: datetime
    ) -> PushAttempt:
        if self.status is not DraftStatus.APPROVED:
            raise errors.DraftNotApproved()
        return self._start_export(actor, export_id, has_active_connector, now, is_retry=False)

    def retry_push(
        self, *, actor: Actor, export_id: uuid.UUID, has_active_connector: bool, now: datetime
    ) -> PushAttempt:
        if self.status is not DraftStatus.ERROR:
            raise errors.DraftNotInError()
        return self._start_export(actor, export_id, has_active_connector, now, is_retry=True)

    def own_authors(self) -> set[str]:
        """The users the four-eyes rule keeps from approving: creator and last editor."""
        authors = {self.created_by_user_id}
        if self.last_edited_by_user_id:
            authors.add(self.last_edited_by_user_id)
        return authors

    def pull_events(self) -> list[DomainEvent]:
        """The events recorded since the last pull (the unit of work publishes them)."""
        pulled, self.events = self.events, []
        return pulled

    # -- internals ---------------------------------------------------------------

    def _record(self, event: type[DomainEvent], actor: Actor, **data: Any) -> None:
        """Record a domain event of this draft, caused by `actor`."""
        self.events.append(
            event(draft_id=self.id, org_id=self.org_id, actor_id=actor.user_id, **data)
        )

    def _start_export(
        self,
        actor: Actor,
        export_id: uuid.UUID,
        has_active_connector: bool,
        now: datetime,
        *,
        is_retry: bool,
    ) -> PushAttempt:
        if not has_active_connector:
            raise errors.NoActiveConnector()
        attempt = PushAttempt(
            erp_export_id=export_id,
            attempt=max((a.attempt for a in self.attempts), default=0) + 1,
            status=ExportStatus.PENDING,
            requested_by_user_id=actor.user_id,
            requested_at=now,
        )
        self.attempts.append(attempt)
        self.current_export_id = export_id
        self.status = DraftStatus.PUSHING
        self.updated_at = now
        self._record(
            PushRequested,
            actor,
            erp_export_id=export_id,
            attempt=attempt.attempt,
            is_retry=is_retry,
            requested_at=now,
            order=self.snapshot(),
        )
        return attempt

    def snapshot(self) -> OrderSnapshot:
        return build(
            OrderSnapshot,
            self,
            draft_id=self.id,
            currency=self.currency or "",
            lines=tuple(build(LineSnapshot, line, line_total=line.total) for line in self.lines),
        )


@dataclass
class ExportProgress(ExportOutcomes):
    """What an export's outcome decides on and changes, without the rest of the draft:
    its status, version and current export and, of its attempts, those the outcomes
    read with it name (an outcome only ever touches the attempt it names)."""

    id: uuid.UUID
    org_id: str
    status: DraftStatus
    version: int
    current_export_id: uuid.UUID | None
    updated_at: datetime
    attempts: list[PushAttempt] = field(default_factory=list)


def _numbered(lines: list[NewLine]) -> list[DraftLine]:
    return [build(DraftLine, line, line_no=i) for i, line in enumerate(lines, start=1)]
