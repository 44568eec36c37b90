"""Wiring: builds the engine, the unit of work and the Kafka consumers from settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orderflow_shared.contracts.topics import DEAD_LETTER_TOPIC
from orderflow_shared.db import make_engine, make_session_factory
from orderflow_shared.messaging.consumer import ConsumerRunner
from orderflow_shared.messaging.kafka import client_options
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from audit_service.adapters.kafka import LagProbe, RawRecordConsumer
from audit_service.adapters.repository import SqlUnitOfWork
from audit_service.entrypoints.ingest import IngestHandlers
from audit_service.service_layer.ports import UnitOfWork
from audit_service.settings import AuditSettings


@dataclass
class Container:
    settings: AuditSettings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]

    def uow(self) -> UnitOfWork:
        return SqlUnitOfWork(self.session_factory)

    @property
    def uow_factory(self) -> Callable[[], UnitOfWork]:
        return self.uow

    async def dispose(self) -> None:
        await self.engine.dispose()


def build_container(settings: AuditSettings) -> Container:
    # UTC sessions: times read back exactly as hashed, even at the calendar's edges
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        connect_args={"options": "-c timezone=UTC"},
    )
    return Container(settings=settings, engine=engine, session_factory=make_session_factory(engine))


@dataclass
class Ingest:
    """The background consumers of `serve`."""

    events: ConsumerRunner
    dead_letters: RawRecordConsumer
    lag: LagProbe


def build_ingest(container: Container) -> Ingest:
    s = container.settings
    handlers = IngestHandlers(container.uow_factory)
    return Ingest(
        events=ConsumerRunner(
            kafka=client_options(s),
            group_id=s.audit_consumer_group,
            pattern=s.audit_topic_pattern,
            handler=handlers.on_events,
            client_id=s.service_name,
            max_batch=s.audit_batch_size,
            name=s.service_name,
            consumer_options={"metadata_max_age_ms": s.audit_topic_refresh_ms},
            report_lag=False,  # `lag` measures the group's committed offsets
        ),
        dead_letters=RawRecordConsumer(
            kafka=client_options(s),
            group_id=s.dead_letter_group,
            topics=[str(DEAD_LETTER_TOPIC)],
            handler=handlers.on_dead_letters,
            client_id=f"{s.service_name}-dead-letter",
            max_batch=s.audit_batch_size,
        ),
        lag=LagProbe(
            client_options(s),
            {
                s.audit_consumer_group: s.audit_topic_pattern,
                s.dead_letter_group: f"^{DEAD_LETTER_TOPIC}$",
            },
        ),
    )
