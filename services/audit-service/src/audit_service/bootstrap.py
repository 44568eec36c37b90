"""Wiring: `build(settings) -> Container`, the roles, and the apps that run them.

The same shape in every service (see draft_api.bootstrap): `build` / `close`, `ROLES`
(`ingest` files every topic and the dead letters into the chains),
`make_app(settings, roles=())` for the HTTP API and `make_role_app(settings, role)` for
`python -m audit_service <role>`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fastapi import FastAPI
from orderflow_shared.contracts.topics import DEAD_LETTER_TOPIC
from orderflow_shared.db import make_engine, make_session_factory
from orderflow_shared.logging import configure_logging
from orderflow_shared.messaging.consumer import ConsumerRunner
from orderflow_shared.messaging.envelope import Envelope
from orderflow_shared.messaging.kafka import client_options
from orderflow_shared.runtime import Role, Wiring, service_checks
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from audit_service.adapters.kafka import LagProbe, raw_record
from audit_service.adapters.mapping import RawRecord
from audit_service.adapters.repository import SqlAppender, SqlUnitOfWork
from audit_service.entrypoints.http import router
from audit_service.entrypoints.ingest import IngestHandlers
from audit_service.service_layer.ports import Appender, UnitOfWork
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

    def appender(self) -> Appender:
        """The transaction of one ingest batch."""
        return SqlAppender(self.engine)

    async def dispose(self) -> None:
        await self.engine.dispose()


DISTRIBUTION = "orderflow-audit-service"
TITLE = "OrderFlow audit-service"


def build(settings: AuditSettings) -> Container:
    # UTC sessions: times read back exactly as hashed, even at the calendar's edges
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        connect_args={"options": "-c timezone=UTC"},
    )
    return Container(settings=settings, engine=engine, session_factory=make_session_factory(engine))


async def close(container: Container) -> None:
    await container.dispose()


#: A fetch of the events consumer is answered once this much is there (or when
#: `audit_fetch_wait_ms` has passed): about a full batch of events.
AUDIT_FETCH_MIN_BYTES = 256 * 1024


def _held_fetch(wait_ms: int) -> dict[str, int]:
    """Fetches held until AUDIT_FETCH_MIN_BYTES or `wait_ms` (see settings); 0: the
    runner's own (answered on the first record, an idle fetch held 500 ms)."""
    if not wait_ms:
        return {}
    return {"fetch_max_wait_ms": wait_ms, "fetch_min_bytes": AUDIT_FETCH_MIN_BYTES}


@dataclass
class Ingest:
    """The background consumers of the `ingest` role."""

    events: ConsumerRunner[Envelope]
    dead_letters: ConsumerRunner[RawRecord]
    lag: LagProbe


def build_ingest(container: Container) -> Ingest:
    s = container.settings
    handlers = IngestHandlers(container.appender)
    return Ingest(
        events=ConsumerRunner(
            kafka=client_options(s),
            group_id=s.audit_consumer_group,
            pattern=s.audit_topic_pattern,
            handler=handlers.on_events,
            client_id=s.service_name,
            max_batch=s.audit_batch_size,
            name=s.service_name,
            consumer_options={
                "metadata_max_age_ms": s.audit_topic_refresh_ms,
                **_held_fetch(s.audit_fetch_wait_ms),
            },
            report_lag=False,  # `lag` measures the group's committed offsets
        ),
        dead_letters=ConsumerRunner(
            kafka=client_options(s),
            group_id=s.dead_letter_group,
            topics=[str(DEAD_LETTER_TOPIC)],
            handler=handlers.on_dead_letters,
            decode=raw_record,  # a dead letter may hold anything
            client_id=f"{s.service_name}-dead-letter",
            max_batch=s.audit_batch_size,
            dead_letter_topic=None,
            report_lag=False,  # `lag` measures the group's committed offsets
        ),
        lag=LagProbe(
            client_options(s),
            {
                s.audit_consumer_group: s.audit_topic_pattern,
                s.dead_letter_group: f"^{DEAD_LETTER_TOPIC}$",
            },
        ),
    )


def http_role(container: Container) -> Role:
    return Role(checks=service_checks(container.engine, container.settings))


def ingest_role(container: Container) -> Role:
    """File every topic and the dead letters into the hash chains."""
    ingest = build_ingest(container)
    interval = container.settings.audit_lag_interval_seconds

    async def lag(stop: asyncio.Event) -> None:
        await ingest.lag.run(stop, interval)

    checks = service_checks(container.engine, container.settings)
    return Role(
        {"events": ingest.events.run, "dead-letters": ingest.dead_letters.run, "lag": lag},
        {**checks, "consumer": ingest.events.ready},
    )


def retention_role(container: Container) -> Role:
    """Sign the chain heads and apply retention, every interval."""
    from audit_service.entrypoints.retention import run_retention_forever

    async def retention(stop: asyncio.Event) -> None:
        await run_retention_forever(container, stop)

    checks = service_checks(container.engine, container.settings)
    return Role({"retention": retention}, checks)


ROLES: dict[str, Callable[[Container], Role]] = {
    "ingest": ingest_role,
    "retention-loop": retention_role,
}
WIRING = Wiring(TITLE, DISTRIBUTION, build, close, http_role, ROLES)


def make_app(settings: AuditSettings | None = None, *, roles: Iterable[str] = ()) -> FastAPI:
    """The HTTP API; the background `roles` named run in the same process."""
    app = WIRING.service_app(settings or AuditSettings(), roles)
    app.include_router(router)
    return app


#: one background role in its own process: health and metrics only
make_role_app = WIRING.role_app


def configure(settings: AuditSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
