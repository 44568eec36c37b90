"""Base unit of work: collects the events of the aggregates it saw, writes them at commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from itertools import groupby

from orderflow_shared import tracing

from export_service.domain.events import DomainEvent
from export_service.domain.export import Export
from export_service.service_layer.ports import (
    CircuitRepository,
    ConnectionRepository,
    ExportRepository,
)


def new_exports(candidates: list[tuple[uuid.UUID, Export]], fresh: set[uuid.UUID]) -> list[Export]:
    """The exports of the candidates whose event is new, the first one per export id."""
    exports: dict[uuid.UUID, Export] = {}
    for event_id, export in candidates:
        if event_id in fresh:
            exports.setdefault(export.id, export)
    return list(exports.values())


class AbstractUnitOfWork:
    connections: ConnectionRepository
    exports: ExportRepository
    circuits: CircuitRepository

    def __init__(self) -> None:
        self._pending: list[DomainEvent] = []
        #: the trace context active when each pending event was published
        self._traces: list[dict[str, str]] = []

    async def __aenter__(self) -> AbstractUnitOfWork:
        self._pending, self._traces = [], []
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.rollback()

    def publish(self, events: Iterable[DomainEvent]) -> None:
        """Queue the events for the commit; each keeps the trace active now."""
        carrier = tracing.current_carrier()
        for event in events:
            self._pending.append(event)
            self._traces.append(carrier)

    async def commit(self) -> None:
        pending, self._pending = self._pending, []
        traces, self._traces = self._traces, []
        if not pending:
            await self._write_events([])  # the adapter's own bookkeeping, if any
        for carrier, group in groupby(zip(pending, traces, strict=True), key=lambda p: p[1]):
            with tracing.attached(carrier):
                await self._write_events([event for event, _ in group])
        await self._commit()

    async def claim_events(self, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        raise NotImplementedError

    async def claim_and_add(
        self, consumer: str, event_ids: list[uuid.UUID], candidates: list[tuple[uuid.UUID, Export]]
    ) -> list[Export]:
        """The claim, then the insert (an adapter may do both in one statement)."""
        fresh = await self.claim_events(consumer, event_ids)
        exports = new_exports(candidates, fresh)
        inserted = await self.exports.add_many(exports)
        return [export for export in exports if export.id in inserted]

    async def rollback(self) -> None:
        self._pending, self._traces = [], []
        await self._rollback()

    async def _write_events(self, events: list[DomainEvent]) -> None:
        raise NotImplementedError

    async def _commit(self) -> None:
        raise NotImplementedError

    async def _rollback(self) -> None:
        raise NotImplementedError
