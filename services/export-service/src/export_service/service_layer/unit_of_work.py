"""Base unit of work: collects the events of the aggregates it saw, writes them at commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from types import TracebackType

from export_service.domain.events import Message
from export_service.service_layer.ports import (
    CircuitRepository,
    ConnectionRepository,
    ExportRepository,
)


class AbstractUnitOfWork:
    connections: ConnectionRepository
    exports: ExportRepository
    circuits: CircuitRepository

    def __init__(self) -> None:
        self._pending: list[Message] = []

    async def __aenter__(self) -> AbstractUnitOfWork:
        self._pending = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()

    def publish(self, messages: Iterable[Message]) -> None:
        self._pending.extend(messages)

    async def commit(self) -> None:
        pending, self._pending = self._pending, []
        await self._write_events(pending)
        await self._commit()

    async def claim_events(self, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        raise NotImplementedError

    async def rollback(self) -> None:
        self._pending = []
        await self._rollback()

    async def _write_events(self, messages: list[Message]) -> None:
        raise NotImplementedError

    async def _commit(self) -> None:
        raise NotImplementedError

    async def _rollback(self) -> None:
        raise NotImplementedError
