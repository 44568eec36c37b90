"""What the use cases need from the outside world."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any, Protocol

from audit_service.domain.checkpoint import Checkpoint
from audit_service.domain.entry import ChainedEntry
from audit_service.domain.query import AuditQuery
from audit_service.domain.retention import LogRow
from audit_service.domain.verification import StoredEntry


class AuditLog(Protocol):
    async def lock_orgs(self, org_ids: Sequence[str]) -> None:
        """Serialize chain appends per org until the end of the transaction."""

    async def find(self, query: AuditQuery) -> list[StoredEntry]:
        """Up to query.limit + 1 entries after query.after, oldest first."""

    def chain(self, org_id: str, chunk: int = 1000) -> AsyncIterator[list[StoredEntry]]:
        """The org's entries in chain order, a chunk at a time."""

    async def org_ids(self) -> list[str]: ...


class Appender(Protocol):
    """The transaction of one ingest batch (rolled back unless committed)."""

    async def __aenter__(self) -> Appender: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def lock_and_read(
        self, org_ids: Sequence[str], event_ids: Collection[uuid.UUID]
    ) -> tuple[set[uuid.UUID], dict[str, str]]:
        """Lock the orgs' chains until the end of the transaction (as
        `AuditLog.lock_orgs`), then: which of the event ids are in the log already, and
        the hash of the newest entry of each of the orgs that has one."""

    async def append(self, entries: Sequence[ChainedEntry]) -> None:
        """Add the entries in their order (the order of their ids)."""

    async def commit(self) -> None: ...


class RetentionStore(Protocol):
    """Policies, checkpoints and archives (the tables of spec 026)."""

    async def policy(self, org_id: str) -> int | None: ...

    async def set_policy(self, org_id: str, days: int, updated_by: str | None) -> None: ...

    async def org_ids(self) -> list[str]:
        """Orgs with entries or checkpoints."""

    async def head(self, org_id: str) -> tuple[int, str] | None:
        """(id, hash) of the org's newest entry."""

    async def sealed_orgs(self) -> set[str]:
        """Orgs with nothing to seal: their newest head checkpoint (newer than their
        newest anchor) still names their newest entry, with that entry's hash."""

    async def entry_hash(self, org_id: str, entry_id: int) -> str | None: ...

    async def count_after(self, org_id: str, after_id: int) -> int:
        """How many of the org's entries have a greater id."""

    async def oldest_rows(self, org_id: str, limit: int, base_seq: int) -> list[LogRow]: ...

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def anchors(self, org_id: str) -> list[Checkpoint]: ...

    async def newest_anchor(self, org_id: str) -> Checkpoint | None: ...

    async def newest_head(self, org_id: str) -> Checkpoint | None: ...

    async def newest_heads(self) -> list[Checkpoint]: ...

    async def add_archive(self, values: dict[str, Any]) -> int: ...

    async def prune(self, archive_id: int) -> int:
        """Delete an archive's rows (idempotent: 0 once pruned)."""


class UnitOfWork(Protocol):
    @property
    def audit_log(self) -> AuditLog: ...

    @property
    def retention(self) -> RetentionStore: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def commit(self) -> None: ...
