"""What the use cases need from the outside world."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from types import TracebackType
from typing import Protocol

from audit_service.domain.entry import ChainedEntry
from audit_service.domain.query import AuditQuery
from audit_service.domain.verification import StoredEntry


class AuditLog(Protocol):
    async def lock_orgs(self, org_ids: Sequence[str]) -> None:
        """Serialize chain appends per org until the end of the transaction."""

    async def existing_event_ids(self, event_ids: Collection[uuid.UUID]) -> set[uuid.UUID]: ...

    async def chain_heads(self, org_ids: Collection[str]) -> dict[str, str]:
        """The hash of the newest entry of each org that has one."""

    async def append(self, entries: Sequence[ChainedEntry]) -> None: ...

    async def find(self, query: AuditQuery) -> list[StoredEntry]:
        """Up to query.limit + 1 entries after query.after, oldest first."""

    def chain(self, org_id: str, chunk: int = 1000) -> AsyncIterator[list[StoredEntry]]:
        """The org's entries in chain order, a chunk at a time."""

    async def org_ids(self) -> list[str]: ...


class UnitOfWork(Protocol):
    @property
    def audit_log(self) -> AuditLog: ...

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...
