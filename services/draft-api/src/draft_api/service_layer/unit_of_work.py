"""Base unit of work: collects the events of the drafts it stored, writes them at commit.

The aggregate records its domain events (`DraftOrder.events`); the drafts repository
remembers every draft it added or saved (`seen`); `commit` pulls their events and hands
them to the adapter (`_write_events`: the outbox, in the same transaction) before it
commits. Events are written under the trace context of the commit, the use case's own.
"""

from __future__ import annotations

from draft_api.domain.events import DomainEvent
from draft_api.service_layer.ports import (
    ConnectorReadModel,
    DraftRepository,
    IdempotencyKeys,
    Inbox,
    OrgSettingsRepository,
)


class AbstractUnitOfWork:
    drafts: DraftRepository
    connectors: ConnectorReadModel
    idempotency_keys: IdempotencyKeys
    inbox: Inbox
    org_settings: OrgSettingsRepository

    async def __aenter__(self) -> AbstractUnitOfWork:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Roll back whatever was not committed."""
        await self.rollback()

    def collect_new_events(self) -> list[DomainEvent]:
        """The events the stored drafts recorded since they were last collected."""
        return [event for draft in self.drafts.seen for event in draft.pull_events()]

    async def commit(self) -> None:
        await self._write_events(self.collect_new_events())
        await self._commit()

    async def rollback(self) -> None:
        await self._rollback()

    async def _write_events(self, events: list[DomainEvent]) -> None:
        raise NotImplementedError

    async def _commit(self) -> None:
        raise NotImplementedError

    async def _rollback(self) -> None:
        raise NotImplementedError
