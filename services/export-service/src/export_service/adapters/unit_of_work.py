"""Postgres unit of work: one session and transaction; events go to the outbox at commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from orderflow_shared.messaging import inbox, outbox
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from export_service.adapters.event_mapping import MAPPING
from export_service.adapters.orm import Tables
from export_service.adapters.repositories import (
    SqlCircuitRepository,
    SqlConnectionRepository,
    SqlExportRepository,
)
from export_service.adapters.secret_box import FernetSecretBox
from export_service.domain.events import DomainEvent
from export_service.domain.export import Export
from export_service.service_layer.unit_of_work import AbstractUnitOfWork


class SqlUnitOfWork(AbstractUnitOfWork):
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        tables: Tables,
        box: FernetSecretBox,
    ) -> None:
        super().__init__()
        self._factory = session_factory
        self._tables = tables
        self._box = box
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        await super().__aenter__()
        self._session = self._factory()
        self.connections = SqlConnectionRepository(self._session, self._tables, self._box)
        self.exports = self._exports = SqlExportRepository(self._session, self._tables)
        self.circuits = SqlCircuitRepository(self._session, self._tables)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._session

    async def claim_events(self, consumer: str, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """The new ids of a batch, claimed in one round trip (`inbox.claim_many`)."""
        return await inbox.claim_many(self.session, self._tables.inbox, consumer, event_ids)

    async def claim_and_add(
        self, consumer: str, event_ids: list[uuid.UUID], candidates: list[tuple[uuid.UUID, Export]]
    ) -> list[Export]:
        """The claim and the insert in one statement (`SqlExportRepository.claim_and_add`)."""
        if not event_ids:
            return []
        return await self._exports.claim_and_add(consumer, event_ids, candidates)

    async def _write_events(self, events: list[DomainEvent]) -> None:
        await outbox.add_events(self.session, self._tables.outbox, map(MAPPING.to_envelope, events))

    async def _commit(self) -> None:
        await self.session.commit()

    async def _rollback(self) -> None:
        if self._session is not None:
            await self._session.rollback()


def sql_uow_factory(
    session_factory: async_sessionmaker[AsyncSession], tables: Tables, box: FernetSecretBox
) -> Callable[[], SqlUnitOfWork]:
    return lambda: SqlUnitOfWork(session_factory, tables, box)
