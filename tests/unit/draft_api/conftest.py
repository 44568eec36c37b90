"""In-memory fakes of draft-api's ports (unit tier only)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from draft_api.domain import errors
from draft_api.domain.connector import ErpConnector
from draft_api.domain.events import DomainEvent
from draft_api.domain.idempotency import IdempotencyRecord
from draft_api.domain.model import DraftOrder, ExportProgress, ExportStatus
from draft_api.domain.org_settings import OrgSettings
from draft_api.service_layer.ports import (
    CacheEntry,
    CacheState,
    DraftQuery,
    DraftSummary,
    PushTarget,
)
from draft_api.service_layer.unit_of_work import AbstractUnitOfWork


class Store:
    """What a database would hold: committed state only."""

    def __init__(self) -> None:
        self.drafts: dict[uuid.UUID, DraftOrder] = {}
        self.connectors: dict[uuid.UUID, ErpConnector] = {}
        self.keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self.inbox: set[uuid.UUID] = set()
        self.org_settings: dict[str, OrgSettings] = {}
        self.outbox: list[DomainEvent] = []
        self.commits = 0


class FakeDrafts:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow
        self.seen: list[DraftOrder] = []
        self.staged: dict[uuid.UUID, ExportProgress] = {}
        self.loaded_versions: dict[uuid.UUID, int] = {}

    async def add(self, draft: DraftOrder) -> None:
        self.uow.pending_drafts[draft.id] = _as_stored(draft)
        self.seen.append(draft)

    async def get(self, org_id: str, draft_id: uuid.UUID, *, lock: bool = False) -> Any:
        draft = self.uow.pending_drafts.get(draft_id) or self.uow.store.drafts.get(draft_id)
        if draft is None or draft.org_id != org_id:
            return None
        return copy.deepcopy(draft)

    async def lock_for_push(
        self, org_id: str, draft_id: uuid.UUID, *, key: str | None = None
    ) -> PushTarget | None:
        draft = await self.get(org_id, draft_id, lock=True)
        if draft is None:
            return None
        # as the Postgres repository loads it: of the attempts, only the latest
        draft.attempts = sorted(draft.attempts, key=lambda a: a.attempt)[-1:]
        return PushTarget(
            draft,
            has_active_connector=await self.uow.connectors.has_active(org_id),
            earlier=None if key is None else await self.uow.idempotency_keys.get(org_id, key),
        )

    async def lock_for_outcomes(
        self, targets: list[tuple[str, uuid.UUID, uuid.UUID]]
    ) -> dict[tuple[str, uuid.UUID], ExportProgress]:
        found: dict[tuple[str, uuid.UUID], ExportProgress] = {}
        for org_id, draft_id, _ in targets:
            draft = await self.get(org_id, draft_id, lock=True)
            if draft is None:
                continue
            # as the Postgres repository reads it: of the attempts, only those named
            named = {export for o, d, export in targets if (o, d) == (org_id, draft_id)}
            self.loaded_versions[draft.id] = draft.version
            found[(org_id, draft_id)] = ExportProgress(
                id=draft.id,
                org_id=draft.org_id,
                status=draft.status,
                version=draft.version,
                current_export_id=draft.current_export_id,
                updated_at=draft.updated_at,
                attempts=[a for a in draft.attempts if a.erp_export_id in named],
            )
        return found

    def save_progress(self, progress: ExportProgress) -> None:
        progress.version += 1
        self.staged[progress.id] = progress

    async def write_progress(self) -> None:
        for progress in self.staged.values():
            draft = await self.get(progress.org_id, progress.id)
            assert draft is not None
            if draft.version != self.loaded_versions[progress.id]:
                raise errors.ConcurrentModification()
            draft.status, draft.updated_at = progress.status, progress.updated_at
            draft.version = progress.version
            for attempt in progress.attempts:
                draft.attempts = [
                    copy.deepcopy(attempt) if a.erp_export_id == attempt.erp_export_id else a
                    for a in draft.attempts
                ]
            self.uow.pending_drafts[draft.id] = _as_stored(draft)
        self.staged.clear()

    async def save(self, draft: DraftOrder) -> None:
        stored = self.uow.store.drafts.get(draft.id)
        if stored is not None and stored.version != draft.version:
            raise errors.ConcurrentModification()
        draft.version += 1
        self.seen.append(draft)
        self.uow.pending_drafts[draft.id] = _as_stored(draft)

    async def page(self, org_id: str, query: DraftQuery) -> tuple[list[DraftSummary], int]:
        needle = (query.search or "").lower()
        found = [
            d
            for d in self.uow.store.drafts.values()
            if d.org_id == org_id
            and (query.status is None or d.status is query.status)
            and (needle in (d.external_ref or "").lower() or needle in d.customer_id.lower())
        ]
        found.sort(key=lambda d: d.created_at, reverse=True)
        page = found[query.offset : query.offset + query.limit]
        return [DraftSummary.of(d) for d in page], len(found)

    async def external_ref_taken(
        self, org_id: str, external_ref: str, *, exclude: uuid.UUID
    ) -> bool:
        return any(
            d.org_id == org_id and d.external_ref == external_ref and d.id != exclude
            for d in self.uow.store.drafts.values()
        )

    async def export_status(self, org_id: str, export_id: uuid.UUID) -> ExportStatus | None:
        for draft in self.uow.store.drafts.values():
            attempt = draft.attempt_for(export_id)
            if attempt is not None and draft.org_id == org_id:
                return attempt.status
        return None


def _as_stored(draft: DraftOrder) -> DraftOrder:
    """A copy as a database holds it: its state, not the events it recorded."""
    stored = copy.deepcopy(draft)
    stored.events = []
    return stored


class FakeConnectors:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def has_active(self, org_id: str) -> bool:
        return any(c.org_id == org_id and c.is_active for c in self.uow.store.connectors.values())

    async def upsert(self, connector: ErpConnector, *, overwrite: bool = True) -> None:
        current = self.uow.store.connectors.get(connector.connection_id)
        if current is None or (overwrite and current.org_id == connector.org_id):
            self.uow.pending_connectors[connector.connection_id] = connector


class FakeKeys:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def get(self, org_id: str, key: str) -> IdempotencyRecord | None:
        return self.uow.store.keys.get((org_id, key))

    async def add(self, record: IdempotencyRecord) -> None:
        if (record.org_id, record.key) in self.uow.store.keys:
            raise errors.IdempotencyKeyInFlight()
        self.uow.pending_keys[(record.org_id, record.key)] = record

    async def delete(self, org_id: str, key: str) -> None:
        self.uow.store.keys.pop((org_id, key), None)


class FakeInbox:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def claim(self, event_id: uuid.UUID) -> bool:
        if event_id in self.uow.store.inbox or event_id in self.uow.pending_inbox:
            return False
        self.uow.pending_inbox.add(event_id)
        return True

    async def claim_many(self, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        return {event_id for event_id in event_ids if await self.claim(event_id)}


class FakeOrgSettings:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def get(self, org_id: str) -> OrgSettings:
        return self.uow.store.org_settings.get(org_id) or OrgSettings(org_id=org_id)

    async def save(self, settings: OrgSettings) -> None:
        self.uow.pending_org_settings[settings.org_id] = settings


class FakeUnitOfWork(AbstractUnitOfWork):
    def __init__(self, store: Store) -> None:
        self.store = store
        self._reset()

    def _reset(self) -> None:
        self.org_settings = FakeOrgSettings(self)
        self.drafts = FakeDrafts(self)
        self.connectors = FakeConnectors(self)
        self.idempotency_keys = FakeKeys(self)
        self.inbox = FakeInbox(self)
        self.pending_drafts: dict[uuid.UUID, DraftOrder] = {}
        self.pending_events: list[DomainEvent] = []
        self.pending_connectors: dict[uuid.UUID, ErpConnector] = {}
        self.pending_keys: dict[tuple[str, str], IdempotencyRecord] = {}
        self.pending_inbox: set[uuid.UUID] = set()
        self.pending_org_settings: dict[str, OrgSettings] = {}

    async def __aenter__(self) -> FakeUnitOfWork:
        self._reset()
        return self

    async def _write_events(self, events: list[DomainEvent]) -> None:
        self.pending_events.extend(events)

    async def _rollback(self) -> None:
        self._reset()

    async def _commit(self) -> None:
        self.store.drafts.update(self.pending_drafts)
        self.store.outbox.extend(self.pending_events)
        self.store.connectors.update(self.pending_connectors)
        self.store.keys.update(self.pending_keys)
        self.store.inbox |= self.pending_inbox
        self.store.org_settings.update(self.pending_org_settings)
        self.store.commits += 1
        self._reset()


class FakeCache:
    """A cache that behaves like the Redis adapter (or like Redis being down)."""

    def __init__(self) -> None:
        self.values: dict[tuple[uuid.UUID, str], str] = {}
        self.down = False

    async def acquire(self, draft_id: uuid.UUID, key: str) -> CacheEntry:
        if self.down:
            return CacheEntry(CacheState.UNAVAILABLE)
        value = self.values.get((draft_id, key))
        if value is None:
            token = f"in-flight:{uuid.uuid4()}"
            self.values[(draft_id, key)] = token
            return CacheEntry(CacheState.ACQUIRED, token=token)
        if value.startswith("in-flight:"):
            return CacheEntry(CacheState.IN_FLIGHT)
        return CacheEntry(CacheState.DONE, export_id=uuid.UUID(value))

    async def remember(self, draft_id: uuid.UUID, key: str, export_id: uuid.UUID) -> None:
        if not self.down:
            self.values[(draft_id, key)] = str(export_id)

    async def release(self, draft_id: uuid.UUID, key: str, token: str) -> None:
        if not self.down and self.values.get((draft_id, key)) == token:
            del self.values[(draft_id, key)]


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def uow_factory(store: Store) -> Any:
    return lambda: FakeUnitOfWork(store)


@pytest.fixture
def cache() -> FakeCache:
    return FakeCache()
