"""One Postgres transaction per use case; events go to the outbox inside it."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from draft_api.adapters.orm import Tables
from draft_api.adapters.repository import (
    SqlConnectorReadModel,
    SqlDraftRepository,
    SqlIdempotencyKeys,
    SqlInbox,
    SqlOrgSettings,
)
from draft_api.service_layer.ports import (
    ConnectorReadModel,
    DraftRepository,
    IdempotencyKeys,
    Inbox,
    OrgSettingsRepository,
)

CONSUMER_NAME = "draft-api"


class SqlAlchemyUnitOfWork:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], tables: Tables) -> None:
        self._session_factory = session_factory
        self._tables = tables

    async def __aenter__(self) -> SqlAlchemyUnitOfWork:
        self.session = self._session_factory()
        self.drafts: DraftRepository = SqlDraftRepository(self.session, self._tables)
        self.connectors: ConnectorReadModel = SqlConnectorReadModel(self.session, self._tables)
        self.idempotency_keys: IdempotencyKeys = SqlIdempotencyKeys(self.session, self._tables)
        self.inbox: Inbox = SqlInbox(self.session, self._tables, CONSUMER_NAME)
        self.org_settings: OrgSettingsRepository = SqlOrgSettings(self.session, self._tables)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
