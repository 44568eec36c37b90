"""Fakes of export-service's ports for the unit tier (in memory, no I/O)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from export_service.adapters.event_mapping import MAPPING
from export_service.domain.circuit import Circuit, CircuitState
from export_service.domain.connection import ErpConnection
from export_service.domain.events import DomainEvent
from export_service.domain.export import Export, ExportStatus
from export_service.service_layer.ports import ClaimChores, ConnectionReport, Upload
from export_service.service_layer.unit_of_work import AbstractUnitOfWork
from orderflow_shared.contracts import (
    DraftPushRequestedV1,
    EventData,
    OrderLineSnapshot,
    OrderSnapshot,
)

to_contract, to_envelope = MAPPING.to_contract, MAPPING.to_envelope


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _stored(aggregate):
    """What a database keeps: the state, not the recorded events."""
    stored = copy.deepcopy(aggregate)
    stored.events = []
    return stored


class FakeConnections:
    def __init__(self, store: dict[uuid.UUID, ErpConnection]) -> None:
        self.store = store

    async def add(self, connection: ErpConnection) -> None:
        self.store[connection.id] = _stored(connection)

    async def save(self, connection: ErpConnection) -> None:
        actives = [
            c
            for c in self.store.values()
            if c.org_id == connection.org_id and c.is_active and c.id != connection.id
        ]
        if connection.is_active and actives:
            raise AssertionError("unique index: two active connections in one org")
        self.store[connection.id] = _stored(connection)

    async def get(self, org_id: str, connection_id: uuid.UUID) -> ErpConnection | None:
        found = self.store.get(connection_id)
        return copy.deepcopy(found) if found and found.org_id == org_id else None

    async def list_for_org(self, org_id: str) -> list[ErpConnection]:
        return [copy.deepcopy(c) for c in self.store.values() if c.org_id == org_id]

    async def active_for_org(self, org_id: str) -> ErpConnection | None:
        for c in self.store.values():
            if c.org_id == org_id and c.is_active:
                return copy.deepcopy(c)
        return None

    async def get_many(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ErpConnection]:
        return {i: copy.deepcopy(self.store[i]) for i in ids if i in self.store}

    async def list_all(self) -> list[ErpConnection]:
        return [copy.deepcopy(c) for c in self.store.values()]

    async def lock_org(self, org_id: str) -> None:
        return None


class FakeCircuits:
    def __init__(self, store: dict[uuid.UUID, Circuit]) -> None:
        self.store = store
        self.writes = 0

    async def get(self, org_id: str, connection_id: uuid.UUID) -> Circuit | None:
        found = self.store.get(connection_id)
        return copy.deepcopy(found) if found and found.org_id == org_id else None

    async def get_many(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Circuit]:
        return {i: copy.deepcopy(self.store[i]) for i in ids if i in self.store}

    async def lock_many(
        self, connections: dict[uuid.UUID, str], now: datetime
    ) -> dict[uuid.UUID, Circuit]:
        for cid, org in connections.items():
            self.store.setdefault(cid, Circuit.closed(cid, org, now))
        return await self.get_many(connections)

    async def lock_probe_due(self, now: datetime, limit: int) -> list[Circuit]:
        due = [c for c in self.store.values() if c.probe_due(now)]
        return [copy.deepcopy(c) for c in due[:limit]]

    async def save(self, circuit: Circuit) -> None:
        self.writes += 1
        self.store[circuit.connection_id] = _stored(circuit)

    async def count_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.store.values():
            counts[c.state.value] = counts.get(c.state.value, 0) + 1
        return counts


class FakeExports:
    def __init__(
        self, store: dict[uuid.UUID, Export], circuits: dict[uuid.UUID, Circuit] | None = None
    ) -> None:
        self.store = store
        self.circuits = circuits if circuits is not None else {}
        #: how many times a claim woke the other workers (this transaction)
        self.announced = 0
        #: another worker holds the claim lock
        self.lock_taken = False

    async def add_many(self, exports: list[Export]) -> set[uuid.UUID]:
        inserted = set()
        for export in exports:
            if export.id not in self.store:
                self.store[export.id] = _stored(export)
                inserted.add(export.id)
        return inserted

    async def save(self, export: Export) -> None:
        self.store[export.id] = _stored(export)

    async def save_claimed(self, exports: list[Export]) -> None:
        for export in exports:
            await self.save(export)

    async def save_if_leased(self, exports: list[Export], owner: str) -> set[uuid.UUID]:
        saved = set()
        for export in exports:
            current = self.store.get(export.id)
            if current is not None and current.holds_lease(owner):
                self.store[export.id] = _stored(export)
                saved.add(export.id)
        return saved

    async def lock_claims(self, now: datetime) -> ClaimChores:
        if self.lock_taken:  # another worker is claiming
            return ClaimChores(held=False, overdue=False, unannounced=False, probes=False)
        return ClaimChores()  # every chore, every time: the steps find what there is

    async def announce_due(self) -> None:
        self.announced += 1

    def _closed(self, export: Export) -> bool:
        circuit = self.circuits.get(export.connection_id) if export.connection_id else None
        return circuit is None or circuit.state is CircuitState.CLOSED

    async def lock_due(self, now: datetime, limit: int, per_connection: int) -> list[Export]:
        busy: dict[uuid.UUID | None, int] = {}
        for e in self.store.values():
            if e.status is ExportStatus.DELIVERING and not e.is_due(now):
                busy[e.connection_id] = busy.get(e.connection_id, 0) + 1
        due = sorted(
            (e for e in self.store.values() if e.is_due(now) and self._closed(e)),
            key=lambda e: (e.next_attempt_at or e.created_at, e.created_at),
        )
        chosen = []
        for e in due:
            if len(chosen) == limit:
                break
            if busy.get(e.connection_id, 0) < per_connection:
                busy[e.connection_id] = busy.get(e.connection_id, 0) + 1
                chosen.append(copy.deepcopy(e))
        return chosen

    async def lock_next_waiting(self, connection_id: uuid.UUID, now: datetime) -> Export | None:
        waiting = [
            e
            for e in self.store.values()
            if e.connection_id == connection_id
            and (
                e.status is ExportStatus.PENDING
                or (e.status is ExportStatus.DELIVERING and e.is_due(now))
            )
        ]
        waiting.sort(key=lambda e: e.created_at)
        return copy.deepcopy(waiting[0]) if waiting else None

    async def lock_overdue(self, now: datetime, limit: int) -> list[Export]:
        overdue = [e for e in self.store.values() if e.is_overdue(now)]
        return [copy.deepcopy(e) for e in overdue[:limit]]

    async def lock_unannounced_behind_open_circuits(self, limit: int) -> list[Export]:
        behind = [
            e
            for e in sorted(self.store.values(), key=lambda e: e.created_at)
            if e.status is ExportStatus.PENDING
            and not e.waiting_for_dropzone
            and e.connection_id in self.circuits
            and self.circuits[e.connection_id].state is not CircuitState.CLOSED
        ]
        return [copy.deepcopy(e) for e in behind[:limit]]

    async def next_due(self, now: datetime) -> datetime | None:
        times = []
        for e in self.store.values():
            if e.status is ExportStatus.PENDING:
                if self._closed(e):
                    times.append(e.next_attempt_at or now)
                elif not e.waiting_for_dropzone:
                    times.append(now)
                if e.deliver_by is not None:
                    times.append(e.deliver_by)
            elif e.status is ExportStatus.DELIVERING:
                times.append(e.lease_expires_at or now)
        for c in self.circuits.values():
            if c.state is CircuitState.OPEN:
                times.append(c.next_probe_at or now)
            elif c.state is CircuitState.HALF_OPEN:
                times.append(c.probe_expires_at or now)
        return min(times, default=None)

    async def backlog(self) -> dict[str, tuple[int, datetime]]:
        found: dict[str, tuple[int, datetime]] = {}
        for e in self.store.values():
            if e.status in (ExportStatus.PENDING, ExportStatus.DELIVERING):
                n, oldest = found.get(e.status.value, (0, e.created_at))
                found[e.status.value] = (n + 1, min(oldest, e.created_at))
        return found


@dataclass(frozen=True)
class Published:
    """An outbox record as the Postgres unit of work writes it (`event_mapping`), with
    its contract kept readable."""

    data: EventData
    subject: str
    key: str
    actor_id: str | None

    @classmethod
    def of(cls, event: DomainEvent) -> Published:
        envelope = to_envelope(event)
        return cls(to_contract(event), envelope.subject, envelope.key, envelope.actor_id)


class FakeUnitOfWork(AbstractUnitOfWork):
    """Commits copy the working state into the committed state; rollback discards it."""

    def __init__(self) -> None:
        super().__init__()
        self.committed_connections: dict[uuid.UUID, ErpConnection] = {}
        self.committed_exports: dict[uuid.UUID, Export] = {}
        self.committed_circuits: dict[uuid.UUID, Circuit] = {}
        self.committed_inbox: set[tuple[str, uuid.UUID]] = set()
        self.outbox: list[Published] = []
        self.commits = 0
        #: committed claims that woke the other workers
        self.announcements = 0
        #: another worker holds the claim lock (claims take nothing)
        self.claim_lock_taken = False

    async def __aenter__(self) -> FakeUnitOfWork:
        await super().__aenter__()
        self.connections = FakeConnections(copy.deepcopy(self.committed_connections))
        self.circuits = FakeCircuits(copy.deepcopy(self.committed_circuits))
        self.exports = FakeExports(copy.deepcopy(self.committed_exports), self.circuits.store)
        self.exports.lock_taken = self.claim_lock_taken
        self._inbox = set(self.committed_inbox)
        self._events: list[Published] = []
        return self

    async def claim_events(self, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        fresh = set()
        for event_id in event_ids:
            if (consumer, event_id) not in self._inbox:
                self._inbox.add((consumer, event_id))
                fresh.add(event_id)
        return fresh

    async def _write_events(self, events: list[DomainEvent]) -> None:
        self._events.extend(Published.of(event) for event in events)

    async def _commit(self) -> None:
        assert isinstance(self.connections, FakeConnections)
        assert isinstance(self.exports, FakeExports)
        self.committed_connections = copy.deepcopy(self.connections.store)
        self.committed_exports = copy.deepcopy(self.exports.store)
        assert isinstance(self.circuits, FakeCircuits)
        self.committed_circuits = copy.deepcopy(self.circuits.store)
        self.committed_inbox = set(self._inbox)
        self.announcements += self.exports.announced
        self.outbox.extend(self._events)
        self._events = []
        self.commits += 1

    async def _rollback(self) -> None:
        self._events = []

    def event_types(self) -> list[str]:
        return [type(m.data).__name__ for m in self.outbox]


class FakeTransport:
    """Delivers into a dict; can be told to fail with given errors first."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.failures: list[Exception] = []
        self.uploads: list[Upload] = []

    async def deliver(self, connection: ErpConnection, upload: Upload) -> str:
        self.uploads.append(upload)
        if self.failures:
            raise self.failures.pop(0)
        path = f"/inbox/{upload.file_name}"
        self.files[path] = upload.content
        return path

    async def check(self, connection: ErpConnection) -> ConnectionReport:
        return ConnectionReport(ok=True, checks=[], error_code=None, message="ok")


class FakeStore:
    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}

    async def put(self, key: str, content: bytes) -> None:
        self.items[key] = content

    async def get(self, key: str) -> bytes | None:
        return self.items.get(key)


def make_snapshot(
    *, org_id: str = "org-a", external_ref: str | None = "PO-4711", description: str = "Widget"
) -> OrderSnapshot:
    return OrderSnapshot(
        draft_id=uuid.UUID("11111111-1111-4111-8111-111111111111"),
        org_id=org_id,
        customer_id="C-1001",
        external_ref=external_ref,
        currency="EUR",
        total=Decimal("28.50"),
        approved_by_user_id="user-9",
        approved_at=datetime(2026, 3, 1, 11, 0, tzinfo=UTC),
        created_at=datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        lines=[
            OrderLineSnapshot(
                line_no=1,
                sku="SKU-1",
                description=description,
                quantity=Decimal("3"),
                unit="EA",
                unit_price=Decimal("9.50"),
                currency="EUR",
                line_total=Decimal("28.50"),
            )
        ],
    )


def make_push(org_id: str = "org-a", export_id: uuid.UUID | None = None) -> DraftPushRequestedV1:
    snapshot = make_snapshot(org_id=org_id)
    return DraftPushRequestedV1(
        draft_id=snapshot.draft_id,
        erp_export_id=export_id or uuid.uuid4(),
        attempt=1,
        requested_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        order=snapshot,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def snapshot() -> OrderSnapshot:
    return make_snapshot()


@pytest.fixture(name="make_snapshot")
def make_snapshot_fixture():  # type: ignore[no-untyped-def]
    return make_snapshot


@pytest.fixture(name="make_push")
def make_push_fixture():  # type: ignore[no-untyped-def]
    return make_push


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()
