"""Wiring: the app factory and the lifespan that owns engine, Redis, relay and consumer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from fastapi import FastAPI
from orderflow_shared.auth import JwtVerifier
from orderflow_shared.db import db_reachable, make_engine, make_session_factory
from orderflow_shared.logging import configure_logging
from orderflow_shared.messaging.consumer import ConsumerRunner
from orderflow_shared.messaging.kafka import client_options, kafka_reachable
from orderflow_shared.messaging.outbox import OutboxRelay
from orderflow_shared.web import make_service_app
from redis.asyncio import Redis

from draft_api import __version__
from draft_api.adapters.housekeeping import run_housekeeping
from draft_api.adapters.orm import build_tables
from draft_api.adapters.redis_cache import RedisIdempotencyCache
from draft_api.adapters.unit_of_work import SqlAlchemyUnitOfWork
from draft_api.entrypoints import consumer
from draft_api.entrypoints.http.dependencies import Services
from draft_api.entrypoints.http.errors import install_domain_errors
from draft_api.entrypoints.http.routes import router
from draft_api.service_layer.ports import UnitOfWork
from draft_api.settings import DraftApiSettings


def make_app(settings: DraftApiSettings | None = None) -> FastAPI:
    settings = settings or DraftApiSettings()
    app = make_service_app(
        title="OrderFlow draft-api",
        version=__version__,
        lifespan=_lifespan,
        service=settings.service_name,
        verifier=JwtVerifier(settings),
        cors_allowed_origins=settings.cors_allowed_origins,
        require_preconditions=settings.require_preconditions,
        description="Draft sales orders: create, validate, approve, push to the ERP.",
    )
    app.state.settings = settings
    install_domain_errors(app)
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: DraftApiSettings = app.state.settings
    tables = build_tables()
    engine = make_engine(
        settings.database_url,
        settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args={"options": f"-c lock_timeout={settings.db_lock_timeout_ms}"},
    )
    session_factory = make_session_factory(engine)
    redis: Redis[bytes] = Redis.from_url(
        settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
    )

    def uow_factory() -> UnitOfWork:
        return SqlAlchemyUnitOfWork(session_factory, tables)

    app.state.services = Services(
        uow_factory=uow_factory,
        cache=RedisIdempotencyCache(redis, ttl=settings.idempotency_ttl),
        idempotency_ttl=settings.idempotency_ttl,
    )

    async def redis_ok() -> bool:
        return bool(await redis.ping())

    app.state.health_checks = {
        "database": lambda: db_reachable(engine),
        "redis": redis_ok,
        "kafka": lambda: kafka_reachable(client_options(settings)),
    }
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    if settings.run_outbox_relay:
        relay = OutboxRelay(
            engine,
            tables.outbox,
            kafka=client_options(settings),
            batch_size=settings.outbox_batch_size,
            poll_interval=settings.outbox_poll_interval_seconds,
            client_id=f"{settings.service_name}-outbox",
        )
        tasks.append(asyncio.create_task(relay.run(stop), name="outbox-relay"))
    if settings.run_consumer:
        runner = ConsumerRunner(
            kafka=client_options(settings),
            group_id=settings.consumer_group_id,
            handler=consumer.make_handler(uow_factory),
            topics=consumer.TOPICS,
            client_id=settings.service_name,
            refuse=consumer.refuse_untrusted,
        )
        tasks.append(asyncio.create_task(runner.run(stop), name="consumer"))
    if settings.run_housekeeping:
        housekeeping = run_housekeeping(
            stop,
            engine,
            tables,
            interval=settings.housekeeping_interval_seconds,
            inbox_retention=timedelta(days=settings.inbox_retention_days),
        )
        tasks.append(asyncio.create_task(housekeeping, name="housekeeping"))
    try:
        yield
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await redis.aclose()  # type: ignore[attr-defined]
        await engine.dispose()


def configure(settings: DraftApiSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
