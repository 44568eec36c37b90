"""Wiring: `build(settings) -> Container`, the roles, and the apps that run them.

The same shape in every service (see draft_api.bootstrap): `build` / `close`, `ROLES`
(`relay` publishes the outbox, `consume` records push requests as exports, `worker`
delivers them), `make_app(settings, roles=())` for the HTTP API and
`make_role_app(settings, role)` for `python -m export_service <role>`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from orderflow_shared.db import make_engine, make_session_factory
from orderflow_shared.logging import configure_logging
from orderflow_shared.messaging.inbox import purge_inbox_forever
from orderflow_shared.messaging.kafka import client_options
from orderflow_shared.notify import listen
from orderflow_shared.runtime import Role, Wiring, outbox_relay_role, service_checks
from orderflow_shared.web import HealthCheck
from sqlalchemy.ext.asyncio import AsyncEngine

from export_service.adapters.local_dropzone import LocalDropzoneTransport, LocalRoots
from export_service.adapters.orm import Tables, make_tables
from export_service.adapters.repositories import EXPORTS_DUE_CHANNEL
from export_service.adapters.secret_box import FernetSecretBox
from export_service.adapters.sftp import SftpDropzoneTransport, SftpPool
from export_service.adapters.storage import FsArtifactStore
from export_service.adapters.unit_of_work import sql_uow_factory
from export_service.domain.circuit import CircuitPolicy
from export_service.domain.connection import ConnectorType
from export_service.domain.retry import RetryPolicy
from export_service.entrypoints.consumer import make_consumer, make_push_handler
from export_service.entrypoints.http import connections_router, install_domain_errors
from export_service.entrypoints.worker import DeliveryWorker
from export_service.service_layer.ports import Clock, Transports, UnitOfWorkFactory
from export_service.settings import ExportSettings

log = logging.getLogger(__name__)
DISTRIBUTION = "orderflow-export-service"
TITLE = "OrderFlow export-service"
#: newly recorded exports are announced on EXPORTS_DUE_CHANNEL, by a trigger on
#: `erp_export` INSERT (migration 0005) at the commit of `consume`'s transaction; each
#: `worker` listens, and sleeps otherwise until a retry, lease or probe falls due (at
#: most EXPORT_IDLE_POLL_INTERVAL_SECONDS)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: ExportSettings
    engine: AsyncEngine
    tables: Tables
    uow_factory: UnitOfWorkFactory
    clock: Clock
    transports: Transports
    sftp_pool: SftpPool
    store: FsArtifactStore
    worker: DeliveryWorker
    local_roots: LocalRoots


def build(settings: ExportSettings, clock: Clock = utc_now) -> Container:
    # Every delivery in flight records its outcome on a connection of its own: a pool
    # smaller than that would open and close connections under load.
    pool_size = max(settings.db_pool_size, settings.export_worker_concurrency + 4)
    engine = make_engine(settings.database_url, pool_size=pool_size)
    tables = make_tables()
    box = FernetSecretBox(settings.export_encryption_key.get_secret_value())
    uow_factory = sql_uow_factory(make_session_factory(engine), tables, box)
    pool = SftpPool(
        connect_timeout=settings.sftp_connect_timeout_seconds,
        sessions_per_target=settings.sftp_sessions_per_target,
        uploads_per_session=settings.sftp_uploads_per_session,
        allow_private_targets=settings.sftp_private_targets_allowed,
    )
    local_roots = LocalRoots(settings.local_dropzone_roots)
    transports: Transports = {
        ConnectorType.SFTP: SftpDropzoneTransport(
            pool, connect_timeout=settings.sftp_connect_timeout_seconds
        ),
        ConnectorType.LOCAL: LocalDropzoneTransport(local_roots),
    }
    store = FsArtifactStore(settings.export_storage_dir)
    worker = DeliveryWorker(
        uow_factory=uow_factory,
        transports=transports,
        store=store,
        policy=retry_policy(settings),
        circuit_policy=circuit_policy(settings),
        per_connection=settings.export_connection_max_in_flight,
        clock=clock,
        lease=timedelta(seconds=settings.export_lease_seconds),
        concurrency=settings.export_worker_concurrency,
        poll_interval=settings.export_poll_interval_seconds,
        idle_poll_interval=settings.export_idle_poll_interval_seconds,
    )
    return Container(
        settings=settings,
        engine=engine,
        tables=tables,
        uow_factory=uow_factory,
        clock=clock,
        transports=transports,
        sftp_pool=pool,
        store=store,
        worker=worker,
        local_roots=local_roots,
    )


def retry_policy(settings: ExportSettings) -> RetryPolicy:
    return RetryPolicy(
        base_seconds=settings.export_backoff_base_seconds,
        max_seconds=settings.export_backoff_max_seconds,
        deadline=timedelta(seconds=settings.export_delivery_deadline_seconds),
    )


def circuit_policy(settings: ExportSettings) -> CircuitPolicy:
    interval = settings.export_circuit_probe_interval_seconds
    return CircuitPolicy(
        failure_threshold=settings.export_circuit_failure_threshold,
        probe_interval=timedelta(seconds=interval),
        max_probe_interval=timedelta(seconds=max(interval, settings.export_backoff_max_seconds)),
    )


async def close(container: Container) -> None:
    await container.sftp_pool.close()
    await container.engine.dispose()


def _base_checks(container: Container) -> dict[str, HealthCheck]:
    return service_checks(container.engine, container.settings)


def http_role(container: Container) -> Role:
    return Role(checks=_base_checks(container))


def relay_role(container: Container) -> Role:
    """Publish the outbox to Kafka."""
    return outbox_relay_role(container.engine, container.tables.outbox, container.settings)


def consume_role(container: Container) -> Role:
    """Record push requests as exports; purge the inbox."""
    s = container.settings
    # a worker in this process (tests, one-process runs); the `worker` processes hear
    # the NOTIFY that the exports' INSERT sends at commit
    on_due = container.worker.wake
    consumer = make_consumer(
        client_options(s),
        make_push_handler(
            container.uow_factory,
            container.clock,
            on_due,
            deadline=timedelta(seconds=s.export_delivery_deadline_seconds),
        ),
    )

    async def purge(stop: asyncio.Event) -> None:
        await purge_inbox_forever(
            stop,
            container.engine,
            container.tables.inbox,
            retention=timedelta(days=s.inbox_retention_days),
            interval=s.inbox_purge_interval_seconds,
        )

    return Role(
        {"consumer": consumer.run, "inbox-purge": purge},
        {**_base_checks(container), "consumer": consumer.ready},
    )


def worker_role(container: Container) -> Role:
    """Deliver exports to the dropzones (run as many as you need)."""
    worker = container.worker
    url = container.settings.database_url

    async def woken(stop: asyncio.Event) -> None:
        await listen(url, EXPORTS_DUE_CHANNEL, worker.wake, stop)

    return Role(
        {"delivery-worker": worker.run, "due-listener": woken},
        {"database": _base_checks(container)["database"], "worker": worker.ready},
    )


ROLES: dict[str, Callable[[Container], Role]] = {
    "relay": relay_role,
    "consume": consume_role,
    "worker": worker_role,
}
WIRING = Wiring(TITLE, DISTRIBUTION, build, close, http_role, ROLES)


def make_app(settings: ExportSettings | None = None, *, roles: Iterable[str] = ()) -> FastAPI:
    """The HTTP API; the background `roles` named run in the same process."""
    app = WIRING.service_app(settings or ExportSettings(), roles)
    app.include_router(connections_router())
    install_domain_errors(app)
    return app


#: one background role in its own process: health and metrics only
make_role_app = WIRING.role_app


def configure(settings: ExportSettings) -> None:
    configure_logging(settings.service_name, settings.log_level)
    if settings.log_level.upper() != "DEBUG":
        # asyncssh logs every connection, channel and SFTP session at INFO
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
