"""One Postgres transaction per use case; events go to the outbox at commit, inside it."""

from __future__ import annotations

from orderflow_shared.messaging import outbox
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from draft_api.adapters.event_mapping import MAPPING
from draft_api.adapters.orm import Tables
from draft_api.adapters.repository import (
    SqlConnectorReadModel,
    SqlDraftRepository,
    SqlIdempotencyKeys,
    SqlInbox,
    SqlOrgSettings,
)
from draft_api.domain.events import DomainEvent
from draft_api.service_layer.unit_of_work import AbstractUnitOfWork

CONSUMER_NAME = "draft-api"


class SqlAlchemyUnitOfWork(AbstractUnitOfWork):
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], tables: Tables) -> None:
        self._session_factory = session_factory
        self._tables = tables

    async def __aenter__(self) -> SqlAlchemyUnitOfWork:
        self.session = self._session_factory()
        self.drafts = SqlDraftRepository(self.session, self._tables)
        self.connectors = SqlConnectorReadModel(self.session, self._tables)
        self.idempotency_keys = SqlIdempotencyKeys(self.session, self._tables)
        self.inbox = SqlInbox(self.session, self._tables, CONSUMER_NAME)
        self.org_settings = SqlOrgSettings(self.session, self._tables)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            await self.session.close()

    async def _write_events(self, events: list[DomainEvent]) -> None:
        await outbox.add_events(self.session, self._tables.outbox, map(MAPPING.to_envelope, events))

    async def _commit(self) -> None:
        await self.session.commit()

    async def _rollback(self) -> None:
        await self.session.rollback()
