"""Fixtures of the audit-service unit tests: sample events and an in-memory audit log."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from pathlib import Path
from types import ModuleType, TracebackType

import pytest
from audit_service.domain.entry import ChainedEntry
from audit_service.domain.query import AuditQuery
from audit_service.domain.verification import StoredEntry


def _load_samples() -> ModuleType:
    name = "audit_service_test_samples"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("samples.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def samples() -> ModuleType:
    return _load_samples()


class FakeAuditLog:
    """The port in memory; commits move staged rows into `rows`."""

    def __init__(self) -> None:
        self.rows: list[StoredEntry] = []
        self.staged: list[StoredEntry] = []
        self.locks: list[list[str]] = []

    async def lock_orgs(self, org_ids: Sequence[str]) -> None:
        self.locks.append(list(org_ids))

    async def lock_and_read(
        self, org_ids: Sequence[str], event_ids: Collection[uuid.UUID]
    ) -> tuple[set[uuid.UUID], dict[str, str]]:
        await self.lock_orgs(org_ids)
        present = {r.entry.event_id for r in self.rows + self.staged}
        heads = {}
        for row in self.rows + self.staged:
            if row.entry.org_id in org_ids:
                heads[row.entry.org_id] = row.hash
        return present & set(event_ids), heads

    async def append(self, entries: Sequence[ChainedEntry]) -> None:
        start = len(self.rows) + len(self.staged) + 1
        for n, chained in enumerate(entries):
            self.staged.append(
                StoredEntry(
                    id=start + n,
                    entry=chained.entry,
                    prev_hash=chained.prev_hash,
                    hash=chained.hash,
                )
            )

    async def find(self, query: AuditQuery) -> list[StoredEntry]:
        rows = [r for r in self.rows if r.entry.org_id == query.org_id]
        if query.entity_id is not None:
            rows = [r for r in rows if r.entry.entity_id == query.entity_id]
        if query.after is not None:
            after = (query.after.occurred_at, query.after.id)
            rows = [r for r in rows if (r.entry.occurred_at, r.id) > after]
        rows.sort(key=lambda r: (r.entry.occurred_at, r.id))
        return rows[: query.limit + 1]

    async def chain(self, org_id: str, chunk: int = 1000) -> AsyncIterator[list[StoredEntry]]:
        rows = [r for r in self.rows if r.entry.org_id == org_id]
        for i in range(0, len(rows), chunk):
            yield rows[i : i + chunk]

    async def org_ids(self) -> list[str]:
        return sorted({r.entry.org_id for r in self.rows})


class FakeRetention:
    """The retention store as an org without policy, checkpoints or archives sees it."""

    def __init__(self, log: FakeAuditLog) -> None:
        self._log = log

    async def org_ids(self) -> list[str]:
        return await self._log.org_ids()

    async def anchors(self, org_id: str) -> list[object]:
        return []

    async def newest_head(self, org_id: str) -> None:
        return None


class FakeUnitOfWork:
    """The unit of work, and the ingest's appender (lock_and_read, append) as well."""

    def __init__(self, log: FakeAuditLog) -> None:
        self.audit_log = log
        self.retention = FakeRetention(log)
        self.commits = 0
        self.lock_and_read = log.lock_and_read
        self.append = log.append

    async def __aenter__(self) -> FakeUnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.audit_log.staged.clear()  # whatever was not committed is rolled back

    async def commit(self) -> None:
        self.audit_log.rows.extend(self.audit_log.staged)
        self.audit_log.staged.clear()
        self.commits += 1


@pytest.fixture
def audit_log() -> FakeAuditLog:
    return FakeAuditLog()


@pytest.fixture
def uow_factory(audit_log: FakeAuditLog):  # type: ignore[no-untyped-def]
    return lambda: FakeUnitOfWork(audit_log)


@pytest.fixture
def appender_factory(uow_factory):  # type: ignore[no-untyped-def]
    return uow_factory
