"""Wiring: `build(settings) -> Container`, the roles, and the apps that run them.

The same shape in every service:
- `build(settings)` makes the adapters (engine, Redis, unit of work) into a `Container`;
  `close(container)` releases them.
- `ROLES` names the background roles, each `Container -> Role` (its loops and checks):
  `relay` publishes the outbox, `consume` applies export results and connector changes
  (and purges what expired).
- `make_app(settings, roles=())` is the HTTP API; the roles given run in its process too
  (tests). `make_role_app(settings, role)` is the small app of one background role
  (`python -m draft_api <role>`: health and metrics only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from fastapi import FastAPI
from orderflow_shared.db import make_engine, make_session_factory
from orderflow_shared.logging import configure_logging
from orderflow_shared.messaging.consumer import ConsumerRunner
from orderflow_shared.messaging.kafka import client_options
from orderflow_shared.runtime import Role, Wiring, outbox_relay_role, service_checks
from orderflow_shared.web import HealthCheck
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from draft_api.adapters.housekeeping import run_housekeeping
from draft_api.adapters.orm import Tables, build_tables
from draft_api.adapters.redis_cache import RedisIdempotencyCache
from draft_api.adapters.unit_of_work import SqlAlchemyUnitOfWork
from draft_api.console import install as install_console
from draft_api.entrypoints import consumer
from draft_api.entrypoints.http.dependencies import Services
from draft_api.entrypoints.http.errors import install_domain_errors
from draft_api.entrypoints.http.routes import router
from draft_api.entrypoints.http.settings_routes import settings_router
from draft_api.service_layer.ports import UnitOfWork
from draft_api.settings import DraftApiSettings

DISTRIBUTION = "orderflow-draft-api"
TITLE = "OrderFlow draft-api"


@dataclass
class Container:
    settings: DraftApiSettings
    engine: AsyncEngine
    tables: Tables
    redis: Redis[bytes]
    services: Services

    @property
    def uow_factory(self) -> Callable[[], UnitOfWork]:
        return self.services.uow_factory


def build(settings: DraftApiSettings) -> Container:
    tables = build_tables()
    engine = make_engine(
        settings.database_url,
        settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args={"options": f"-c lock_timeout={settings.db_lock_timeout_ms}"},
        # no round trip before each checkout: a connection that Postgres dropped fails
        # its first statement, SQLAlchemy then drops every pooled connection, and the
        # push runs its first statement again (SqlDraftRepository.lock_for_push); another
        # request answers 503 once, a consumer batch is retried
        pool_pre_ping=False,
    )
    session_factory = make_session_factory(engine)
    redis: Redis[bytes] = Redis.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
    )

    def uow_factory() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(session_factory, tables)

    services = Services(
        uow_factory=uow_factory,
        cache=RedisIdempotencyCache(redis, ttl=settings.idempotency_ttl),
        idempotency_ttl=settings.idempotency_ttl,
    )
    return Container(settings, engine, tables, redis, services)


async def close(container: Container) -> None:
    await container.redis.aclose()  # type: ignore[attr-defined]
    await container.engine.dispose()


def http_role(container: Container) -> Role:
    redis = container.redis

    async def redis_ok() -> bool:
        return bool(await redis.ping())

    return Role(checks={**_base_checks(container), "redis": redis_ok})


def relay_role(container: Container) -> Role:
    """Publish the outbox to Kafka."""
    return outbox_relay_role(container.engine, container.tables.outbox, container.settings)


def consume_role(container: Container) -> Role:
    """Apply export results and connector changes; purge what expired."""
    s = container.settings
    runner = ConsumerRunner(
        kafka=client_options(s),
        group_id=s.consumer_group_id,
        handler=consumer.make_handler(container.uow_factory),
        topics=consumer.TOPICS,
        client_id=s.service_name,
        refuse=consumer.refuse_untrusted,
    )

    async def housekeeping(stop: asyncio.Event) -> None:
        await run_housekeeping(
            stop,
            container.engine,
            container.tables,
            interval=s.housekeeping_interval_seconds,
            inbox_retention=timedelta(days=s.inbox_retention_days),
        )

    return Role(
        {"consumer": runner.run, "housekeeping": housekeeping},
        {**_base_checks(container), "consumer": runner.ready},
    )


def _base_checks(container: Container) -> dict[str, HealthCheck]:
    return service_checks(container.engine, container.settings)


ROLES: dict[str, Callable[[Container], Role]] = {"relay": relay_role, "consume": consume_role}
WIRING = Wiring(TITLE, DISTRIBUTION, build, close, http_role, ROLES)


def make_app(settings: DraftApiSettings | None = None, *, roles: Iterable[str] = ()) -> FastAPI:
    """The HTTP API; the background `roles` named run in the same process."""
    app = WIRING.service_app(
        settings or DraftApiSettings(),
        roles,
        description="Draft sales orders: create, validate, approve, push to the ERP.",
    )
    install_domain_errors(app)
    app.include_router(router)
    app.include_router(settings_router)
    install_console(app)
    return app


#: one background role in its own process: health and metrics only
make_role_app = WIRING.role_app


def configure(settings: DraftApiSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
