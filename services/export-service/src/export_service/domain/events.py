"""Domain events the aggregates record; `adapters/event_mapping.py` publishes them.

Each event is named for what happened and carries the facts its contract publishes,
under the contract's field names, plus what the envelope routes by: the org, the
person who caused it (None: the service itself) and the entity it is about, the
subject and key (one partition keeps an entity's events in order, and compaction
keeps its latest): `about` names the field that holds the entity's id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

Change = Literal["created", "updated", "activated", "deactivated", "restated"]


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    about: ClassVar[str]
    org_id: str
    actor_id: str | None = None

    @property
    def entity_id(self) -> uuid.UUID:
        entity: uuid.UUID = getattr(self, self.about)
        return entity


@dataclass(frozen=True, kw_only=True)
class ExportEvent(DomainEvent):
    """A step of one export, published under the draft it delivers."""

    about: ClassVar[str] = "draft_id"
    draft_id: uuid.UUID
    erp_export_id: uuid.UUID
    attempts: int


@dataclass(frozen=True, kw_only=True)
class ExportSent(ExportEvent):
    export_storage_key: str
    remote_path: str
    checksum_sha256: str
    size_bytes: int
    sent_at: datetime


@dataclass(frozen=True, kw_only=True)
class ExportFailed(ExportEvent):
    error_code: str
    error_message: str
    permanent: bool
    failed_at: datetime


@dataclass(frozen=True, kw_only=True)
class ExportDelayed(ExportEvent):
    """A transient failure (or an open circuit): the export waits for its next attempt."""

    connection_id: uuid.UUID | None
    error_code: str
    error_message: str
    next_attempt_at: datetime
    deliver_by: datetime | None
    delayed_at: datetime


@dataclass(frozen=True, kw_only=True)
class ConnectionEvent(DomainEvent):
    """A change of one ERP connection or of its delivery circuit, published under it."""

    about: ClassVar[str] = "connection_id"
    connection_id: uuid.UUID


@dataclass(frozen=True, kw_only=True)
class ConnectionChanged(ConnectionEvent):
    change: Change
    name: str
    connector_type: str
    is_active: bool
    changed_at: datetime


@dataclass(frozen=True, kw_only=True)
class CircuitMoved(ConnectionEvent):
    state: str
    previous_state: str
    consecutive_failures: int
    last_error_code: str | None
    next_probe_at: datetime | None
    since: datetime

    @property
    def changed_at(self) -> datetime:
        return self.since
