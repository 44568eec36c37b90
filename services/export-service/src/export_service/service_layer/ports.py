"""Ports: what the use cases need from the outside world (typing.Protocol)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from export_service.domain.circuit import Circuit
from export_service.domain.connection import ConnectorType, ErpConnection
from export_service.domain.events import DomainEvent
from export_service.domain.export import Export

Clock = Callable[[], datetime]


class ConnectionRepository(Protocol):
    async def add(self, connection: ErpConnection) -> None: ...

    async def save(self, connection: ErpConnection) -> None: ...

    async def get(self, org_id: str, connection_id: uuid.UUID) -> ErpConnection | None: ...

    async def list_for_org(self, org_id: str) -> list[ErpConnection]: ...

    async def active_for_org(self, org_id: str) -> ErpConnection | None: ...

    async def get_many(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, ErpConnection]: ...

    async def list_all(self) -> list[ErpConnection]: ...

    async def lock_org(self, org_id: str) -> None:
        """Serialise changes of one org's connections until the transaction ends."""
        ...


@dataclass(frozen=True)
class ClaimChores:
    """What a claim must do before taking due exports (False: skip that step)."""

    #: PENDING exports past their deadline (they fail)
    overdue: bool = True
    #: PENDING exports behind a circuit that is not closed, not yet said to wait
    unannounced: bool = True
    #: open circuits whose probe is due
    probes: bool = True
    #: exports that may be due (PENDING past their next attempt, or under an expired lease)
    due: bool = True
    #: False: another worker holds the claim lock (is claiming now); this claim takes nothing
    held: bool = True


class ExportRepository(Protocol):
    async def add_many(self, exports: list[Export]) -> set[uuid.UUID]:
        """Insert; the ids actually inserted (an existing id is left alone)."""
        ...

    async def save(self, export: Export) -> None: ...

    async def save_claimed(self, exports: list[Export]) -> None: ...

    async def save_if_leased(self, exports: list[Export], owner: str) -> set[uuid.UUID]:
        """Save attempt outcomes of the exports `owner` still holds the lease of; their ids."""
        ...

    async def lock_claims(self, now: datetime) -> ClaimChores:
        """Serialise the claims of all workers until the transaction ends, without
        waiting (`held` False when another worker holds the lock); which chores the
        claim has beside the due exports."""
        ...

    async def announce_due(self) -> None:
        """Wake every worker at commit (the channel new exports are announced on)."""
        ...

    async def lock_due(self, now: datetime, limit: int, per_connection: int) -> list[Export]:
        """Due exports of connections with a closed circuit, row-locked, skipping rows
        another worker holds, at most `per_connection` in flight per connection."""
        ...

    async def lock_next_waiting(self, connection_id: uuid.UUID, now: datetime) -> Export | None:
        """The connection's oldest waiting export, row-locked (a circuit's probe)."""
        ...

    async def lock_overdue(self, now: datetime, limit: int) -> list[Export]:
        """PENDING exports past their deadline, row-locked."""
        ...

    async def lock_unannounced_behind_open_circuits(self, limit: int) -> list[Export]:
        """PENDING exports of connections whose circuit is not closed that do not yet
        say they wait for the dropzone, row-locked."""
        ...

    async def next_due(self, now: datetime) -> datetime | None:
        """The earliest time a claim could find work (an export due or overdue, a lease
        expiring, an open circuit's probe, an export to announce as waiting: `now` or
        earlier when something already is); None when nothing waits."""
        ...

    async def backlog(self) -> dict[str, tuple[int, datetime]]:
        """Exports not yet final (PENDING, DELIVERING): per status, how many and the
        oldest one's creation time (statuses without exports are left out)."""
        ...


class CircuitRepository(Protocol):
    async def get(self, org_id: str, connection_id: uuid.UUID) -> Circuit | None: ...

    async def get_many(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Circuit]: ...

    async def lock_many(
        self, connections: dict[uuid.UUID, str], now: datetime
    ) -> dict[uuid.UUID, Circuit]:
        """Circuits of these connections (id -> org id), created closed when missing,
        row-locked."""
        ...

    async def lock_probe_due(self, now: datetime, limit: int) -> list[Circuit]: ...

    async def save(self, circuit: Circuit) -> None: ...

    async def count_by_state(self) -> dict[str, int]: ...


class UnitOfWork(Protocol):
    connections: ConnectionRepository
    exports: ExportRepository
    circuits: CircuitRepository

    async def __aenter__(self) -> UnitOfWork: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def claim_events(self, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Inbox: the ids among these that were not applied before (claimed now)."""
        ...

    async def claim_and_add(
        self, consumer: str, event_ids: list[uuid.UUID], candidates: list[tuple[uuid.UUID, Export]]
    ) -> list[Export]:
        """Claim every event id (`claim_events`), then insert the export of each
        candidate `(event id, export)` whose event was new, first one per export id (an
        existing export id is left alone); the exports inserted, in candidate order."""
        ...

    def publish(self, events: Iterable[DomainEvent]) -> None:
        """Queue events for the outbox; they are written by `commit`."""
        ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class Upload:
    file_name: str
    content: bytes
    checksum: str
    check_existing: bool


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str


@dataclass(frozen=True)
class ConnectionReport:
    ok: bool
    checks: list[Check]
    error_code: str | None
    message: str


class LocalDirectoryPolicy(Protocol):
    """Where an org's `local_dropzone` directories may lie (the host's file system)."""

    def refusal(self, org_id: str, directory: str) -> str | None:
        """Why the org may not use `directory` (None: it may)."""
        ...


class Transport(Protocol):
    async def deliver(self, connection: ErpConnection, upload: Upload) -> str:
        """Put the file in the dropzone exactly once; the remote path. DeliveryError."""
        ...

    async def check(self, connection: ErpConnection) -> ConnectionReport: ...


Transports = Mapping[ConnectorType, Transport]


class ArtifactStore(Protocol):
    async def put(self, key: str, content: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...
